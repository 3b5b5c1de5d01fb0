"""Batched vs sequential throughput: K styles on one content, as one vmapped program or K runs.

    python3 benchmarks/batch_throughput.py [--sizes 128 256] [--ks 1 2 4] [--iterations 10]
                                           [--configs lbfgs:zoom lbfgs:backtracking adam] [--json out.json]

For each size, optimizer and K it prints the steady-state time of ``iterations``
iterations for all K items, batched (one ``minimize_batch``) and sequential (K
``minimize`` calls of the same problems, back to back), as item-iterations per second,
and their ratio (batched / sequential throughput). Both are compiled before timing, and
measured side by side. Square size×size images: Tübingen and the paintings of
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
from jaxstyle.optimize import minimize, minimize_batch
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
    problem = jaxstyle.prepare_batch(content, styles, shape=(size, size), optimizer=optimizer, iterations=iterations, tolerance=0.0,
                                     linesearch=linesearch, weights=params)  # fmt: skip
    items = [problem.item(i) for i in range(k)]

    def batched(n):
        return minimize_batch(problem.objective, (problem.params,), (problem.terms,), problem.init_images, n,
                              problem.optimizer)[0]  # fmt: skip

    def sequential(n):
        return [minimize(item.objective, (item.params, item.terms), item.init_image, n, problem.optimizer)[0]
                for item in items]  # fmt: skip

    batched(1)  # compile both programs first
    sequential(1)
    batched_s = _timed(lambda: batched(iterations))
    sequential_s = _timed(lambda: sequential(iterations))
    work = k * iterations
    return {
        "size": size, "k": k, "iterations": iterations, "optimizer": optimizer, "linesearch": linesearch,
        "batched_s": round(batched_s, 2), "sequential_s": round(sequential_s, 2),
        "batched_item_it_per_s": round(work / batched_s, 3), "sequential_item_it_per_s": round(work / sequential_s, 3),
        "ratio": round(sequential_s / batched_s, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--configs", nargs="+", default=["lbfgs:zoom", "lbfgs:backtracking", "adam"],
                        help="optimizer[:line search]")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    params = jaxstyle.load_weights()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"{len(jax.devices())} device(s); {args.iterations} iterations")  # fmt: skip
    print(f"{'size':>5} {'optimizer':>18} {'K':>3} {'batched s':>10} {'seq. s':>8} {'batched it/s':>13} "
          f"{'seq. it/s':>10} {'ratio':>6}")  # fmt: skip
    rows = []
    for size in args.sizes:
        for config in args.configs:
            optimizer, _, linesearch = config.partition(":")
            for k in args.ks:
                r = measure(size, k, args.iterations, optimizer, params, linesearch or "zoom")
                rows.append(r)
                print(f"{size:>5} {config:>18} {k:>3} {r['batched_s']:>10} {r['sequential_s']:>8} "
                      f"{r['batched_item_it_per_s']:>13} {r['sequential_item_it_per_s']:>10} {r['ratio']:>6}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
