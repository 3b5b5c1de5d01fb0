"""Compile time of jaxstyle's loop, cold and with JAX's persistent compilation cache warm.

    python benchmarks/compile_time.py [--sizes 256 512] [--optimizers lbfgs adam] [--json out.json]

Each measurement runs in a fresh Python process (so nothing is cached in memory), twice
against the same new cache directory: the first compiles and fills the cache, the
second finds the compiled loop there, as a second ``jaxstyle stylize`` of the same size
does (the CLI turns the cache on, in the user cache directory). Printed per size and
optimizer: tracing and lowering (Python, never cached) and XLA's compilation (what the
persistent cache saves), cold and warm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
import jaxstyle
from jaxstyle.optimize import OptimizerConfig, init_state, run_chunk
size, optimizer = int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
content, style = rng.random((size * 3 // 4, size, 3), np.float32), rng.random((size, size, 3), np.float32)
batch = jaxstyle.prepare(content, style, size=size, optimizer=optimizer)
problem = batch.item(0)
config = OptimizerConfig(optimizer)
state = init_state(problem.init_image, config)
args = (state, jnp.int32(5), problem.objective.prepare(problem.params), (batch.terms,))
start = time.perf_counter()
lowered = run_chunk.lower(*args, loss_fn=problem.objective, config=config, chunk_size=5)
traced = time.perf_counter() - start
start = time.perf_counter()
compiled = lowered.compile()
compile_s = time.perf_counter() - start
print(json.dumps({"trace_s": round(traced, 2), "compile_s": round(compile_s, 2)}))
"""


def measure(size: int, optimizer: str, cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(cache), str(size), optimizer],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--optimizers", nargs="+", default=["lbfgs", "adam"])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    print(f"{'size':>5} {'optimizer':>9} {'trace s':>8} {'cold compile s':>15} {'warm compile s':>15}")
    rows = []
    for size in args.sizes:
        for optimizer in args.optimizers:
            with tempfile.TemporaryDirectory() as cache:
                cold = measure(size, optimizer, Path(cache))
                warm = measure(size, optimizer, Path(cache))
            rows.append({"size": size, "optimizer": optimizer, "trace_s": cold["trace_s"],
                         "cold_compile_s": cold["compile_s"], "warm_compile_s": warm["compile_s"]})  # fmt: skip
            print(f"{size:>5} {optimizer:>9} {cold['trace_s']:>8} {cold['compile_s']:>15} {warm['compile_s']:>15}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
