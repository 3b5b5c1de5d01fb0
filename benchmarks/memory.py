"""Memory of one value+gradient, and the largest square image that fits, per option.

    python benchmarks/memory.py [--configs plain remat bf16 remat+bf16] [--budget-gib 24]
                                [--run-sizes 512 1024] [--json out.json]

For each configuration (``remat``: recompute each VGG block in the backward pass;
``bf16``: VGG in bfloat16) it prints:
  - XLA's own plan for one value+gradient at 1024²: temporary buffers plus arguments
    and outputs (``compiled.memory_analysis()``; compiling only, nothing runs);
  - the largest square size (a multiple of 64) whose plan fits in ``--budget-gib``,
    found by bisection on that plan;
  - for ``--run-sizes``: the peak resident memory of a fresh process that really runs
    one value+gradient, and its seconds (the second call), to check the plan.
Random images stand in for the photo; the weights are jaxstyle's (fetched if needed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CONFIGS = {"plain": {}, "remat": {"remat": True}, "bf16": {"compute_dtype": "bfloat16"},
           "remat+bf16": {"remat": True, "compute_dtype": "bfloat16"}}  # fmt: skip

CHILD = r"""
import json, resource, sys, time
import jax, numpy as np
import jaxstyle
size, options, run = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "run"
rng = np.random.default_rng(0)
image = rng.random((size, size, 3), np.float32)
problem = jaxstyle.prepare(image, image, size=size, **options).item(0)
value_and_grad = jax.jit(jax.value_and_grad(lambda x, p, t: problem.objective(x, p, t)))
args = (problem.init_image, *problem.objective.prepare(problem.params), problem.terms)
compiled = value_and_grad.lower(*args).compile()
m = compiled.memory_analysis()
out = {"plan_bytes": m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes}
if run:
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def child(size: int, options: dict, run: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(size), json.dumps(options), "run" if run else "plan"],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_fitting(options: dict, budget: float, low: int = 256, high: int = 8192) -> int:
    """The largest multiple of 64 in [low, high] whose plan is within ``budget`` bytes."""
    lo, hi = low // 64, high // 64
    while lo < hi:
        mid = (lo + hi + 1) // 2
        plan = child(mid * 64, options, run=False).get("plan_bytes", float("inf"))
        lo, hi = (mid, hi) if plan <= budget else (lo, mid - 1)
    return lo * 64


def _cell(run: dict) -> str:
    if "seconds" not in run:
        return run["error"][:20]
    return f"{run['peak_rss_bytes'] / 2**30:.2f} / {run['seconds']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--run-sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    gib = 2**30
    print(f"{'config':>11} {'plan@1024² GiB':>15} {'largest ≤ ' + format(args.budget_gib, 'g') + ' GiB':>17}"
          + "".join(f" {f'{s}²: peak GiB / s':>20}" for s in args.run_sizes))  # fmt: skip
    rows = []
    for name in args.configs:
        options = CONFIGS[name]
        plan = child(1024, options, run=False)["plan_bytes"]
        largest = largest_fitting(options, args.budget_gib * gib)
        runs = {size: child(size, options, run=True) for size in args.run_sizes}
        rows.append({"config": name, "plan_1024_bytes": plan, "largest_square": largest,
                     "runs": {str(k): v for k, v in runs.items()}})  # fmt: skip
        cells = "".join(f" {_cell(r):>20}" for r in runs.values())
        print(f"{name:>11} {plan / gib:>15.2f} {largest:>17}{cells}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
