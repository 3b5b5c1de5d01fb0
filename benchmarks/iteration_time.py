"""Seconds per iteration and compile time of jaxstyle's optimisation loop.

    python benchmarks/iteration_time.py [--sizes 256 512] [--iterations 20] [--json out.json]

For each size (the output's longer side; square images unless ../shared/images has
the Tübingen photo and Starry Night) and optimizer, it prints:
  compile  — the first chunk's wall time minus one steady iteration (tracing + XLA);
  s/iter   — steady-state seconds per iteration inside the compiled loop;
  s/eval   — one jitted value+gradient on its own, for reference.
A figure printer, not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxstyle
from jaxstyle.optimize import OptimizerConfig, init_state, run_chunk
from shared_images import content_and_style  # benchmarks/ is on sys.path when run as a script


def measure(size: int, optimizer: str, iterations: int, params) -> dict:
    content, style = content_and_style(size)
    batch = jaxstyle.prepare(content, style, size=size, optimizer=optimizer, weights=params)
    problem = batch.item(0)
    args = (*problem.objective.prepare(problem.params), problem.terms)  # as the loop has them
    config = OptimizerConfig(optimizer)

    value_and_grad = jax.jit(jax.value_and_grad(problem.objective))
    jax.block_until_ready(value_and_grad(problem.init_image, *args))
    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(problem.init_image, *args))
    eval_s = time.perf_counter() - start

    run = lambda state, n: run_chunk(  # noqa: E731
        state, jnp.int32(n), args[:1], (batch.terms,), loss_fn=problem.objective, config=config,
        chunk_size=iterations,
    )
    state = init_state(problem.init_image, config)
    start = time.perf_counter()
    state, losses = run(state, 1)
    jax.block_until_ready(losses)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    state, losses = run(state, iterations)
    jax.block_until_ready(losses)
    per_iter = (time.perf_counter() - start) / iterations
    return {
        "size": size, "shape": list(problem.init_image.shape), "optimizer": optimizer,
        "compile_s": round(first_s - per_iter, 2), "s_per_iter": round(per_iter, 3),
        "s_per_eval": round(eval_s, 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--optimizers", nargs="+", default=["lbfgs", "adam"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    params = jaxstyle.load_weights()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"{len(jax.devices())} device(s)")  # fmt: skip
    print(f"{'size':>5} {'H×W':>9} {'optimizer':>9} {'compile s':>10} {'s/iter':>8} {'s/eval':>8}")
    rows = []
    for size in args.sizes:
        for optimizer in args.optimizers:
            r = measure(size, optimizer, args.iterations, params)
            rows.append(r)
            h, w, _ = r["shape"]
            print(f"{size:>5} {f'{h}×{w}':>9} {optimizer:>9} {r['compile_s']:>10} {r['s_per_iter']:>8} {r['s_per_eval']:>8}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
