"""Every benchmark in turn, each writing its JSON into one directory.

    python benchmarks/run_all.py [--out bench-results] [--quick]

Runs iteration_time, compile_time, memory, batch_throughput, end_to_end and spatial_memory
(and, with --quick only, defaults: its full run takes hours), and, when torch is
installed (``pip install -e '.[torch]'``), vs_torch and time_to_quality; each prints
its own table as it goes. ``--quick`` runs small sizes and few repeats (about five
minutes: to check the scripts work, not for figures); the full run takes about
45 minutes on a 2-core CPU: memory.py's bisection computes style targets at large
sizes, and PyTorch's 1000 L-BFGS iterations take seven.
Returns non-zero if any script failed, naming it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "iteration_time": ["--sizes", "256", "512", "--iterations", "20"],
    "compile_time": ["--sizes", "256", "512"],
    "memory": [],
    "batch_throughput": [],
    "end_to_end": [],
    "vs_torch": ["--sizes", "256", "512", "--repeats", "7"],
    "time_to_quality": ["--size", "256", "--optimizers", "lbfgs"],
    "spatial_memory": [],
}
QUICK = {
    "iteration_time": ["--sizes", "128", "--iterations", "5"],
    "compile_time": ["--sizes", "128", "--optimizers", "adam"],
    "memory": ["--configs", "plain", "--budget-gib", "2", "--run-sizes", "256"],
    "batch_throughput": ["--sizes", "64", "--ks", "2", "--iterations", "5"],
    "end_to_end": ["--sizes", "64", "--iterations", "5", "10"],
    "vs_torch": ["--sizes", "128", "--repeats", "2"],
    "time_to_quality": ["--size", "64", "--torch-iterations", "20", "--jax-max-iterations", "40"],
    "spatial_memory": ["--sizes", "128", "256", "--parts", "1", "2", "--fit-parts", "1", "2", "--budgets-gib", "0.5"],
    # defaults.py takes hours at its full settings (4 pairs × candidates × 256 and 512 px): run it on its own.
    "defaults": ["--sizes", "64", "--pairs", "tubingen:starry_night", "--candidates", "before", "defaults",
                 "--iterations", "20", "--sheets", "bench-results/defaults-sheets"],
}
NEEDS_TORCH = {"vs_torch", "time_to_quality"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--quick", action="store_true", help="small sizes: check the scripts, not figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    has_torch = importlib.util.find_spec("torch") is not None
    failed = []
    for name, options in (QUICK if args.quick else FULL).items():
        if name in NEEDS_TORCH and not has_torch:
            print(f"== {name}: skipped (torch is not installed: pip install -e '.[torch]')", flush=True)
            continue
        command = [sys.executable, str(HERE / f"{name}.py"), *options, "--json", str(args.out / f"{name}.json")]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command)
        print(f"== {name}: {'ok' if done.returncode == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"JSON in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
