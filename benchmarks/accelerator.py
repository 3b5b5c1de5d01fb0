"""Accelerator figures: seconds per iteration, model FLOPs utilisation, batch
throughput and the largest size that fits, in float32 and bfloat16.

    python benchmarks/accelerator.py [--weights w.msgpack] [--sizes 512 1024]
        [--iterations 500] [--ks 1 4 8] [--peak-tflops T] [--json out.json]

Meant for a GPU or TPU (it runs anywhere; on a CPU the figures mean little). With no
network there, carry converted weights cut at conv5_1 (``python -m weights_tools
convert CACHE --up-to conv5_1 --dtype float16 -o w.msgpack``: 26 MB).

Per size and compute dtype it prints:
  s/eval   — one jitted value+gradient (median of 5);
  GFLOP    — the model's FLOPs per value+gradient, from the layer shapes: every 3×3
             convolution up to relu5_1 forward (2·9·C_in·C_out·H·W) and again for its
             input gradient (the weights are frozen), plus the Gram matrices and their
             gradients (4·M·C² per style layer): ≈ 380 GFLOP at 512²;
  MFU      — GFLOP / s/eval / the device's peak (``--peak-tflops``, else a table of
             dense peaks for the devices named below);
  loop s   — ``--iterations`` L-BFGS iterations inside one compiled loop;
  and per K in ``--ks``: images·evaluations per second for K images vmapped;
  and the largest square side (multiple of 64) whose compiled plan fits the device's
  memory (``memory_analysis`` against ``memory_stats()["bytes_limit"]``).
Square random images stand in for photos unless ../shared/images is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxstyle
from jaxstyle.objective import LossLayers
from jaxstyle.optimize import OptimizerConfig, init_state, run_chunk
from jaxstyle.vgg import CONV_SHAPES, LAYERS, convs_needed
from shared_images import content_and_style  # benchmarks/ is on sys.path when run as a script

# Dense peaks in TFLOP/s (vendor data sheets, SXM parts): bfloat16 tensor cores, and
# float32 as XLA runs it on these GPUs by default (TF32 tensor cores).
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 494.0}, "H200": {"bfloat16": 989.0, "float32": 494.0}}


def model_flops(h: int, w: int, layers: LossLayers = LossLayers()) -> float:
    """FLOPs of one value+gradient at an h×w image, counted from the layer shapes."""
    flops, side = 0.0, (h, w)
    convs = convs_needed(layers.content + layers.style)
    for name in LAYERS[: LAYERS.index(convs[-1]) + 2]:  # up to the last needed ReLU
        if name.startswith("pool"):
            side = (side[0] // 2, side[1] // 2)
        elif name in convs:
            _, _, cin, cout = CONV_SHAPES[name]
            flops += 2 * (2 * 9 * cin * cout * side[0] * side[1])  # forward + input gradient
        if name in layers.style:
            cout = CONV_SHAPES["conv" + name[4:]][3]
            flops += 4 * side[0] * side[1] * cout**2  # Gram forward and its gradient
    return flops


def _peak(dtype: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_TFLOPS.items():
        if name in kind:
            return peaks[dtype] * 1e12
    return None


def _median(fn, repeats=5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, dtype: str, params, iterations: int, ks, peak) -> dict:
    content, style = content_and_style(size)
    batch = jaxstyle.prepare(content, style, size=size, weights=params, compute_dtype=dtype, optimizer="lbfgs")
    problem = batch.item(0)
    x, args = problem.init_image, (*problem.objective.prepare(problem.params), problem.terms)
    value_and_grad = jax.jit(jax.value_and_grad(problem.objective))
    jax.block_until_ready(value_and_grad(x, *args))
    s_eval = _median(lambda: value_and_grad(x, *args))
    h, w = x.shape[:2]
    flops = model_flops(h, w)
    config = OptimizerConfig("lbfgs")
    loop = lambda state: run_chunk(state, jnp.int32(iterations), args[:1], (batch.terms,), loss_fn=problem.objective,  # noqa: E731
                                   config=config, chunk_size=iterations)  # fmt: skip
    jax.block_until_ready(loop(init_state(x, config))[1])  # compile
    loop_s = _median(lambda: loop(init_state(x, config))[1], repeats=2)
    batch = {}
    batched = jax.jit(jax.vmap(jax.value_and_grad(problem.objective), in_axes=(0, None, None)))
    for k in ks:
        xs = jnp.stack([x] * k)
        jax.block_until_ready(batched(xs, *args))
        batch[k] = round(k / _median(lambda: batched(xs, *args)), 2)
    return {
        "size": size, "shape": [h, w], "dtype": dtype, "s_per_eval": round(s_eval, 4), "gflop": round(flops / 1e9, 1),
        "mfu": round(flops / s_eval / peak, 3) if peak else None, "iterations": iterations, "loop_s": round(loop_s, 3),
        "evals_per_s_by_k": batch,
    }  # fmt: skip


def largest_side(dtype: str, params, limit: float, low: int, high: int) -> int:
    """The largest multiple of 64 in [low, high] whose value+gradient plan fits ``limit`` bytes."""
    rng = np.random.default_rng(0)

    def fits(side: int) -> bool:
        image = rng.random((side, side, 3), np.float32)
        problem = jaxstyle.prepare(image, image, size=side, weights=params, compute_dtype=dtype).item(0)
        compiled = jax.jit(jax.value_and_grad(problem.objective)).lower(problem.init_image, *problem.objective.prepare(problem.params), problem.terms).compile()
        m = compiled.memory_analysis()
        return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes <= limit

    lo, hi = low // 64, high // 64
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * 64) else (lo, mid - 1)
    return lo * 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="a jaxstyle weights file (default: the fetched one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak for MFU")
    parser.add_argument("--largest-max", type=int, default=8192, help="upper end of the bisection (0: skip it)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = jax.devices()[0]
    params = jaxstyle.load_weights(args.weights)
    print(f"jax {jax.__version__}, {device.platform}: {device.device_kind}")
    rows, largest = [], {}
    print(f"{'size':>5} {'H×W':>10} {'dtype':>8} {'s/eval':>8} {'GFLOP':>7} {'MFU':>6} {f'{args.iterations} its s':>10}  evals/s by K")
    for size in args.sizes:
        for dtype in args.dtypes:
            r = measure(size, dtype, params, args.iterations, args.ks, _peak(dtype, args.peak_tflops))
            rows.append(r)
            h, w = r["shape"]
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "?"
            print(f"{size:>5} {f'{h}×{w}':>10} {dtype:>8} {r['s_per_eval']:>8} {r['gflop']:>7} {mfu:>6} {r['loop_s']:>10}  {r['evals_per_s_by_k']}", flush=True)
    limit = (device.memory_stats() or {}).get("bytes_limit")
    if args.largest_max and limit:
        for dtype in args.dtypes:
            largest[dtype] = largest_side(dtype, params, limit, 256, args.largest_max)
            print(f"largest square that fits {limit / 2**30:.1f} GiB, {dtype}: {largest[dtype]}²", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": device.device_kind, "rows": rows, "largest": largest}, indent=2))


if __name__ == "__main__":
    main()
