"""Wall time until the objective is as low as the PyTorch ports get it, side by side.

    python benchmarks/time_to_quality.py [--size 256] [--torch-iterations 1000] [--json out.json]

PyTorch side: the identical objective (``vs_torch.TorchObjective``), from the content
image, minimised as the PyTorch ports of neural-style do: ``torch.optim.LBFGS`` with
lr 1, history 100, no line search, ``--torch-iterations`` iterations in one ``step``.
Thresholds: the objective of the image it would save (clamped to [0, 1]), and the
lowest loss its unconstrained iterates reached.

jaxstyle side, right after: its default L-BFGS (zoom line search, pixels kept in
[0, 1]) from the same image, in chunks of 10; the wall time (compilation included)
at which the loss first falls below the threshold. Also Adam (``--preset fast``'s
settings). The speedup is torch's time over jaxstyle's. A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxstyle
from jaxstyle.images import fit_size, load_image, to_array
from jaxstyle.optimize import OptimizerConfig, init_state, run_chunk
from shared_images import content_and_style  # benchmarks/ is on sys.path when run as a script
from vs_torch import TorchObjective


def torch_run(torch, problem, style_arr, iterations: int) -> tuple[float, float, list]:
    problem = problem.item(0)
    obj = TorchObjective(torch, jax.device_get(problem.params), np.asarray(problem.content_image), style_arr,
                         problem.terms['style'].weight, torch.channels_last)  # fmt: skip
    # The optimised tensor stays contiguous (LBFGS flattens its gradient with view());
    # the network itself runs channels_last, its faster format here.
    x = torch.from_numpy(np.array(problem.init_image)).permute(2, 0, 1)[None].contiguous()
    x.requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1, max_iter=iterations, history_size=100,
                                  tolerance_grad=-1, tolerance_change=-1)  # fmt: skip
    trace = []
    start = time.perf_counter()
    # It minimises L / L(x0): the same minimiser, and L-BFGS without a line search is
    # invariant to that scale in exact arithmetic; at L ~ 1e12 its float32 curvature
    # products overflow (inf, then NaN, by the third iteration) otherwise.
    scale = 1.0 / float(obj.value_and_grad(x)[0])

    def closure():
        optimizer.zero_grad()
        value, grad = obj.value_and_grad(x)
        x.grad = (grad * scale).contiguous()
        trace.append((time.perf_counter() - start, float(value)))
        return value * scale

    optimizer.step(closure)
    seconds = time.perf_counter() - start
    image = x.detach().clamp(0, 1)[0].permute(1, 2, 0).numpy()
    saved = float(problem.objective(jnp.asarray(image), problem.params, problem.terms))
    return seconds, saved, trace


def jax_time_to(problem, config: OptimizerConfig, thresholds: dict, max_iterations: int) -> dict:
    """For each threshold: seconds (compilation included) and iterations until the loss
    at the current iterate is ≤ it, checked every 10 iterations; None if never."""
    item = problem.item(0)
    args = (*item.objective.prepare(item.params), item.terms)
    start = time.perf_counter()
    state, done = init_state(problem.init_images, config), 0
    reached = {}
    while done < max_iterations and len(reached) < len(thresholds):
        state, result = run_chunk(state, jnp.int32(10), args[:1], (problem.terms,), loss_fn=item.objective,
                                  config=config, chunk_size=10)  # fmt: skip
        done += int(result.ran[0])
        current = float(item.objective(state.image[0], *args))
        for name, threshold in thresholds.items():
            if name not in reached and current <= threshold:
                reached[name] = {"seconds": time.perf_counter() - start, "iterations": done, "loss": current}
        if int(result.ran[0]) < 10:
            break
    return {name: reached.get(name, {"seconds": None, "iterations": done}) for name in thresholds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--torch-iterations", type=int, default=1000)
    parser.add_argument("--jax-max-iterations", type=int, default=300)
    parser.add_argument("--optimizers", nargs="+", default=["lbfgs", "adam"], choices=["lbfgs", "adam"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    content, style = content_and_style(args.size)
    problem = jaxstyle.prepare(content, style, size=args.size, content_weight=1.0, tv_weight=0.0)  # the port's objective
    style_pil = load_image(style, "style")
    style_arr = to_array(style_pil, fit_size(*style_pil.size, args.size))
    torch_s, clamped, trace = torch_run(torch, problem, style_arr, args.torch_iterations)
    # Two thresholds: the objective of the image the port saves (clamped to [0, 1]), and,
    # stricter, the lowest loss its unconstrained iterates reached.
    thresholds = {"clamped": clamped, "unclamped": min(v for _, v in trace)}
    print(f"torch LBFGS (lr 1, history 100, no line search): {args.torch_iterations} iterations, {len(trace)} "
          f"evaluations, {torch_s:.1f} s; lowest loss {thresholds['unclamped']:.6g}, "
          f"its clamped image's {clamped:.6g}", flush=True)  # fmt: skip
    rows = {"size": args.size, "torch_s": torch_s, "thresholds": thresholds, "jaxstyle": {}}
    configs = {"lbfgs": OptimizerConfig("lbfgs"), "adam": OptimizerConfig("adam", learning_rate=0.02)}
    for name in args.optimizers:
        rows["jaxstyle"][name] = reached = jax_time_to(problem, configs[name], thresholds, args.jax_max_iterations)
        for which, r in reached.items():
            if r["seconds"] is None:
                print(f"jaxstyle {name}, {which}: not below {thresholds[which]:.6g} in {r['iterations']} iterations")
            else:
                print(f"jaxstyle {name}, {which}: below {thresholds[which]:.6g} after {r['iterations']} iterations, "
                      f"{r['seconds']:.1f} s: {torch_s / r['seconds']:.2f}x sooner", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
