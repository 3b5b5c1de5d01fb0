"""XLA's memory plan per device for one value+gradient, with the image split over P devices.

    python3 benchmarks/spatial_memory.py [--sizes 1024 2048] [--parts 1 2 4] [--fit-parts 1 4 8]
        [--budgets-gib 16 80]

Runs on forced host CPU devices (``--xla_force_host_platform_device_count``, set here before
JAX starts), so anyone can run it: nothing is executed, each program is only compiled and its
``compiled.memory_analysis()`` read. The plan is per device: the arguments (the weights,
replicated, and the image's rows), the outputs and the temporaries. Then, from the plans at
the two sizes (linear in the pixel count: a + b·n²), the largest square whose per-device
plan fits each budget, checked by compiling at that size. A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from jaxstyle.objective import LossLayers, StyleObjective  # noqa: E402
from jaxstyle.sharding import run_mesh  # noqa: E402
from jaxstyle.terms import ContentLoss, GramStyleLoss, Sum, TotalVariation, Weighted  # noqa: E402
from jaxstyle.vgg import init_vgg19_params  # noqa: E402

GIB = 2**30
LAYERS = LossLayers(convolutions="plain").checked()
CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
         "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1")  # fmt: skip


def _terms(size: int):
    """Targets of the right shapes (their values do not change the plan)."""
    shapes = jax.eval_shape(lambda p, x: __import__("jaxstyle").vgg19_features(p, x, LAYERS.content + LAYERS.style),
                            PARAMS, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))  # fmt: skip
    content = {name: jnp.zeros(shapes[name].shape[1:], jnp.float32) for name in LAYERS.content}
    grams = {name: jnp.zeros((shapes[name].shape[-1],) * 2, jnp.float32) for name in LAYERS.style}
    weights = {name: jnp.float32(0.2) for name in LAYERS.style}
    one = jnp.float32(1.0)
    return {"content": Weighted(one, ContentLoss(content)), "style": Weighted(one, GramStyleLoss(grams, weights)),
            "tv": Weighted(one, TotalVariation()), "extra": Weighted(one, Sum(()))}  # fmt: skip


def plan(size: int, parts: int) -> dict:
    """Per-device memory plan (bytes) of one value+gradient of a size × size image split in ``parts``."""
    mesh = run_mesh(jax.devices()[:parts], parts)
    rows = NamedSharding(mesh, PartitionSpec("space"))
    whole = NamedSharding(mesh, PartitionSpec())
    x = jax.ShapeDtypeStruct((size, size, 3), jnp.float32, sharding=rows)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=whole), PARAMS)
    terms = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=whole), _terms(size))
    compiled = jax.jit(jax.value_and_grad(StyleObjective(LAYERS)), out_shardings=(whole, rows)).lower(x, params, terms).compile()
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return dict(args=m.argument_size_in_bytes, temp=m.temp_size_in_bytes, total=total)


PARAMS = jax.tree.map(lambda a: jnp.asarray(a), init_vgg19_params(jax.random.key(0), CONVS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1024, 2048])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--fit-parts", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--budgets-gib", type=float, nargs="+", default=[16, 80])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    print(f"jax {jax.__version__}, {len(jax.devices())} forced host devices", file=sys.stderr)
    plans = {}
    print(f"{'size':>6} {'P':>2} {'args GiB':>9} {'temp GiB':>9} {'total GiB':>10} {'vs P=1':>7}")
    for size in args.sizes:
        for parts in sorted(set(args.parts) | set(args.fit_parts)):
            plans[size, parts] = p = plan(size, parts)
            ratio = p["total"] / plans[size, 1]["total"] if (size, 1) in plans else float("nan")
            print(f"{size:>6} {parts:>2} {p['args'] / GIB:>9.3f} {p['temp'] / GIB:>9.3f} {p['total'] / GIB:>10.3f} {ratio:>7.2f}",
                  flush=True)  # fmt: skip
            rows.append(dict(kind="plan", size=size, parts=parts, ratio_to_one=ratio, **p))
    small, large = args.sizes
    print("\nlargest square whose per-device plan fits (fit a + b·n², then compiled at that size)")
    print(f"{'budget GiB':>10} {'P':>2} {'side px':>8} {'plan there GiB':>15}")
    for budget in args.budgets_gib:
        for parts in args.fit_parts:
            b = (plans[large, parts]["total"] - plans[small, parts]["total"]) / (large**2 - small**2)
            a = plans[small, parts]["total"] - b * small**2
            side = int(math.sqrt(max(budget * GIB - a, 0) / b)) // (16 * parts) * (16 * parts)
            there = plan(side, parts)["total"] / GIB
            print(f"{budget:>10g} {parts:>2} {side:>8} {there:>15.2f}", flush=True)
            rows.append(dict(kind="largest", budget_gib=budget, parts=parts, side=side, plan_gib=there))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
