"""jaxstyle against PyTorch on the identical objective, side by side in one process.

    pip install torch==2.13.0          # the optional extra: pip install -e '.[torch]'
    python benchmarks/vs_torch.py [--sizes 256 512] [--repeats 5] [--json out.json]

The PyTorch objective is written here the way a careful PyTorch user would: the same
converted weights as frozen tensors (no autograd on them), the same preprocessing,
max pooling, losses and normalisation (content ½Σ(F−P)² at relu4_2; E_l =
Σ(G−A)²/(4N²M²) at relu1_1..relu5_1, w_l = 1/5; β as jaxstyle's auto), under
``torch.inference_mode`` for the targets, with the faster of the contiguous and
channels_last memory formats. Before timing, the losses must agree to 1e-4 relative
and the gradients to 1e-3 (float32 sums in another order differ by ~1e-4 there). Then each side's value+gradient is timed ``--repeats`` times (median),
jaxstyle first, and the ratio torch/jaxstyle printed: > 1 means jaxstyle is faster.
A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxstyle
from shared_images import content_and_style  # benchmarks/ is on sys.path when run as a script


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class TorchObjective:
    """The jaxstyle objective in plain PyTorch (default layers, max pooling, Gram loss)."""

    def __init__(self, torch, params, content, style, style_weight, memory_format):
        self.torch, self.F, self.memory_format = torch, torch.nn.functional, memory_format
        self.matrix = torch.from_numpy(np.array(params["input"]["matrix"]))
        self.offset = torch.from_numpy(np.array(params["input"]["offset"]))
        self.convs = {}
        for name, layer in params.items():
            if name.startswith("conv"):
                kernel = torch.from_numpy(np.transpose(np.asarray(layer["kernel"]), (3, 2, 0, 1)).copy())
                self.convs[name] = (kernel.contiguous(memory_format=memory_format), torch.from_numpy(np.array(layer["bias"])))
        self.style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
        self.style_weight = float(style_weight)
        with torch.inference_mode():
            content_features = self.features(self._nchw(content))
            self.content_target = content_features["relu4_2"].clone()
            style_features = self.features(self._nchw(style))
            out_positions = {k: v.shape[2] * v.shape[3] for k, v in content_features.items()}
            self.grams = {
                k: (self.gram(style_features[k]) * (out_positions[k] / (style_features[k].shape[2] * style_features[k].shape[3]))).clone()
                for k in self.style_layers
            }  # fmt: skip

    def _nchw(self, image):
        x = self.torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None]
        return x.contiguous(memory_format=self.memory_format)

    def features(self, x):
        # x: (1, 3, H, W) RGB in [0, 1] → preprocessing as a 1×1 affine map, as jaxstyle does.
        x = self.torch.einsum("nchw,cd->ndhw", x, self.matrix) + self.offset[None, :, None, None]
        x = x.contiguous(memory_format=self.memory_format)
        out = {}
        for name in jaxstyle.vgg.LAYERS[: jaxstyle.vgg.LAYERS.index("relu5_1") + 1]:
            if name.startswith("conv"):
                kernel, bias = self.convs[name]
                x = self.F.conv2d(x, kernel, bias, padding=1)
            elif name.startswith("relu"):
                x = self.F.relu(x)
                out[name] = x
            else:
                x = self.F.max_pool2d(x, 2)
        return out

    @staticmethod
    def gram(f):
        n, c, h, w = f.shape
        flat = f.reshape(c, h * w)
        return flat @ flat.T

    def value_and_grad(self, image_nchw):
        x = image_nchw.detach().requires_grad_(True)
        feats = self.features(x)
        content = 0.5 * ((feats["relu4_2"] - self.content_target) ** 2).sum()
        style = 0.0
        for k in self.style_layers:
            _, c, h, w = feats[k].shape
            style = style + 0.2 * 0.25 * (((self.gram(feats[k]) - self.grams[k]) / (c * h * w)) ** 2).sum()
        loss = content + self.style_weight * style
        loss.backward()
        return loss.detach(), x.grad


def measure(size: int, repeats: int, params, torch) -> dict:
    content, style = content_and_style(size)
    # The objective the torch side computes: the paper's (α = 1, no TV term).
    problem = jaxstyle.prepare(content, style, size=size, weights=params, content_weight=1.0, tv_weight=0.0).item(0)
    image = np.asarray(problem.init_image)
    # Compare at a generic point, not at the content image (where the content loss is 0).
    rng = np.random.default_rng(1)
    point = np.clip(image + 0.1 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)

    value_and_grad = jax.jit(jax.value_and_grad(problem.objective))
    args = (*problem.objective.prepare(problem.params), problem.terms)  # the strategy's precomputed kernels, as the loop has them
    start = time.perf_counter()
    jax_value, jax_grad = jax.block_until_ready(value_and_grad(jnp.asarray(point), *args))
    compile_s = time.perf_counter() - start
    jax_s = _median_seconds(lambda: jax.block_until_ready(value_and_grad(jnp.asarray(point), *args)), repeats)

    content_arr = np.asarray(problem.content_image)
    h, w = content_arr.shape[:2]
    from jaxstyle.images import fit_size, load_image, to_array

    style_pil = load_image(style, "style")
    style_arr = to_array(style_pil, fit_size(*style_pil.size, size))
    best = None
    for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        obj = TorchObjective(torch, jax.device_get(problem.params), content_arr, style_arr,
                             problem.terms['style'].weight, fmt)  # fmt: skip
        x = torch.from_numpy(point).permute(2, 0, 1)[None].contiguous(memory_format=fmt)
        value, grad = obj.value_and_grad(x)
        value_gap = abs(float(value) - float(jax_value)) / abs(float(jax_value))
        g_t = grad[0].permute(1, 2, 0).numpy()
        grad_gap = float(np.linalg.norm(g_t - np.asarray(jax_grad)) / np.linalg.norm(np.asarray(jax_grad)))
        if value_gap > 1e-4 or grad_gap > 1e-3:
            raise SystemExit(f"the objectives differ ({fmt_name}): loss {value_gap:.2e}, gradient {grad_gap:.2e} relative")
        seconds = _median_seconds(lambda: obj.value_and_grad(x), repeats)
        if best is None or seconds < best[1]:
            best = (fmt_name, seconds, value_gap, grad_gap)
    fmt_name, torch_s, value_gap, grad_gap = best
    return {
        "size": size, "shape": [h, w], "jax_s": round(jax_s, 3), "jax_compile_s": round(compile_s - jax_s, 2),
        "torch_s": round(torch_s, 3), "torch_format": fmt_name, "ratio_torch_over_jax": round(torch_s / jax_s, 2),
        "loss_gap": float(f"{value_gap:.2e}"), "grad_gap": float(f"{grad_gap:.2e}"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit("this benchmark needs torch: pip install torch==2.13.0 (or pip install -e '.[torch]')")
    params = jaxstyle.load_weights()
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.machine()}")  # fmt: skip
    print(f"{'size':>5} {'H×W':>9} {'jax s':>7} {'torch s':>8} {'torch/jax':>9} {'torch format':>13} {'loss gap':>9} {'grad gap':>9}")
    rows = []
    for size in args.sizes:
        r = measure(size, args.repeats, params, torch)
        rows.append(r)
        h, w = r["shape"]
        print(f"{size:>5} {f'{h}×{w}':>9} {r['jax_s']:>7} {r['torch_s']:>8} {r['ratio_torch_over_jax']:>9} "
              f"{r['torch_format']:>13} {r['loss_gap']:>9} {r['grad_gap']:>9}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
