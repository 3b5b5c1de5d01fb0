"""Batched vs sequential throughput: K styles on one content, as one vmapped program or K runs.

    python3 benchmarks/batch_throughput.py [--size 256] [--ks 1 2 4 8] [--iterations 10]
                                           [--optimizer adam] [--json out.json]

For each K it prints the steady-state time of ``iterations`` iterations for all K
items, batched (one ``minimize_batch``) and sequential (K ``minimize`` calls of the
same problems, back to back), as item-iterations per second, and their ratio. Both
are compiled before timing. Square size×size images: Tübingen and the paintings of
../shared/images when present, random smooth images otherwise. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

import jaxstyle
from jaxstyle.batch import minimize_batch, prepare_batch
from jaxstyle.optimize import minimize
from shared_images import SHARED  # benchmarks/ is on sys.path when run as a script


def _images(size: int, k: int):
    paintings = sorted(p for p in SHARED.glob("*.jpg") if p.name != "tubingen.jpg")
    if (SHARED / "tubingen.jpg").is_file() and paintings:
        return SHARED / "tubingen.jpg", [paintings[i % len(paintings)] for i in range(k)]
    rng = np.random.default_rng(0)
    return rng.random((size, size, 3), np.float32), [rng.random((size, size, 3), np.float32) for _ in range(k)]


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def measure(size: int, k: int, iterations: int, optimizer: str, params, linesearch: str = "zoom") -> dict:
    content, styles = _images(size, k)
    batch = prepare_batch(content, styles, shape=(size, size), optimizer=optimizer, iterations=iterations,
                          linesearch=linesearch, weights=params)  # fmt: skip
    items = [jax.tree.map(lambda a, i=i: a[i], batch.targets) for i in range(k)]

    def sequential(n):
        return [minimize(batch.objective, (batch.params, t), batch.init_images[i], n, batch.optimizer)[0]
                for i, t in enumerate(items)]  # fmt: skip

    warm = batch._replace(iterations=1)
    minimize_batch(warm)  # compile both programs first
    sequential(1)
    batched_s = _timed(lambda: minimize_batch(batch)[0])
    sequential_s = _timed(lambda: sequential(iterations))
    work = k * iterations
    return {
        "size": size, "k": k, "iterations": iterations, "optimizer": optimizer, "linesearch": linesearch,
        "batched_s": round(batched_s, 2), "sequential_s": round(sequential_s, 2),
        "batched_item_it_per_s": round(work / batched_s, 3), "sequential_item_it_per_s": round(work / sequential_s, 3),
        "speedup": round(sequential_s / batched_s, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    parser.add_argument("--linesearch", default="zoom", choices=("zoom", "backtracking"), help="L-BFGS's")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    params = jaxstyle.load_weights()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"{len(jax.devices())} device(s); {args.size}×{args.size}, {args.optimizer}"
          f"{'/' + args.linesearch if args.optimizer == 'lbfgs' else ''}, {args.iterations} iterations")  # fmt: skip
    print(f"{'K':>3} {'batched s':>10} {'seq. s':>8} {'batched it/s':>13} {'seq. it/s':>10} {'speedup':>8}")
    rows = []
    for k in args.ks:
        r = measure(args.size, k, args.iterations, args.optimizer, params, args.linesearch)
        rows.append(r)
        print(f"{k:>3} {r['batched_s']:>10} {r['sequential_s']:>8} {r['batched_item_it_per_s']:>13} "
              f"{r['sequential_item_it_per_s']:>10} {r['speedup']:>8}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
