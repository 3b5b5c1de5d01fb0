"""The command line's seconds per iteration beside the bare compiled loop's.

    python3 benchmarks/end_to_end.py [--sizes 256 512] [--optimizer adam] [--iterations 20 60]

For each size, ``jaxstyle stylize`` (in this process, after a warm-up run that compiles)
is timed at two iteration counts, and its seconds per iteration are the difference over
the difference of the counts: loading, preparing and saving cancel out, and what is left
is what a user's run costs per iteration — the loop with its progress bar, the callbacks
between chunks (finishing the images for a possible Ctrl-C) and their host copies. The
bare loop is ``minimize_batch`` on the same problem, timed the same way. Prints figures
(ratio CLI / bare; 1.0 means no overhead); not a test. Tübingen × Starry Night from
../shared/images, or random images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

import jaxstyle
from jaxstyle.cli import main as cli
from jaxstyle.optimize import minimize_batch
from shared_images import SHARED  # benchmarks/ is on sys.path when run as a script


def _inputs(directory: Path) -> tuple[Path, Path]:
    if (SHARED / "tubingen.jpg").is_file() and (SHARED / "starry_night.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    rng = np.random.default_rng(0)
    paths = directory / "content.png", directory / "style.png"
    for path in paths:
        Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(path)
    return paths


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(size: int, optimizer: str, counts: tuple[int, int], weights: Path, directory: Path) -> dict:
    content, style = _inputs(directory)
    out = directory / f"out_{size}.png"

    def run_cli(n: int) -> None:
        argv = ["stylize", str(content), str(style), "-o", str(out), "--size", str(size), "--iterations", str(n),
                "--optimizer", optimizer, "--weights", str(weights), "--tolerance", "0"]  # fmt: skip
        with contextlib.redirect_stderr(io.StringIO()):  # the progress bar runs, unseen
            assert cli(argv) == 0

    problem = jaxstyle.prepare(content, style, size=size, optimizer=optimizer, weights=str(weights), tolerance=0.0)

    def run_bare(n: int) -> None:
        images, _, _ = minimize_batch(problem.objective, (problem.params,), (problem.terms,), problem.init_images, n,
                                      problem.optimizer)  # fmt: skip
        jax.block_until_ready(images)

    run_cli(counts[0])  # compile (and fill the persistent cache)
    run_bare(counts[0])
    low, high = counts
    cli_s = (_seconds(lambda: run_cli(high)) - _seconds(lambda: run_cli(low))) / (high - low)
    bare_s = (_seconds(lambda: run_bare(high)) - _seconds(lambda: run_bare(low))) / (high - low)
    return {"size": size, "optimizer": optimizer, "cli_s_per_it": round(cli_s, 3), "bare_s_per_it": round(bare_s, 3),
            "ratio": round(cli_s / bare_s, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    parser.add_argument("--iterations", type=int, nargs=2, default=[20, 60], metavar=("LOW", "HIGH"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    weights = jaxstyle.weights.locate_weights()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}); "
          f"{args.optimizer}, iterations {args.iterations[0]} and {args.iterations[1]} differenced")  # fmt: skip
    print(f"{'size':>5} {'CLI s/it':>9} {'bare s/it':>10} {'CLI/bare':>9}")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes:
            r = measure(size, args.optimizer, tuple(args.iterations), weights, Path(directory))
            rows.append(r)
            print(f"{size:>5} {r['cli_s_per_it']:>9} {r['bare_s_per_it']:>10} {r['ratio']:>9}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
