"""Independent numpy (float64) implementations used to check jaxstyle's JAX code."""

from __future__ import annotations

import numpy as np

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


def caffe_input(rgb01: np.ndarray) -> np.ndarray:
    """RGB in [0,1] -> BGR, 0..255, minus the ImageNet mean (written out by hand)."""
    return rgb01[..., ::-1].astype(np.float64) * 255.0 - CAFFE_MEAN_BGR


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation, zero padding 1, of x (H, W, Cin) with an HWIO kernel."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + h, dx : dx + w, :] @ kernel[dy, dx].astype(np.float64)
    return out + bias


def pool(x: np.ndarray, kind: str) -> np.ndarray:
    h, w, c = x.shape
    blocks = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return blocks.max(axis=(1, 3)) if kind == "max" else blocks.mean(axis=(1, 3))


BLOCK_CONVS = (2, 2, 4, 4, 4)


def vgg_features(get_conv, rgb01: np.ndarray, wanted, pooling: str = "max") -> dict:
    """Features of one (H, W, 3) image; ``get_conv(b, c)`` returns (kernel, bias)."""
    x = caffe_input(rgb01)
    wanted, out = set(wanted), {}
    for b, n in enumerate(BLOCK_CONVS, 1):
        for c in range(1, n + 1):
            kernel, bias = get_conv(b, c)
            x = conv_same(x, kernel, bias)
            out[f"conv{b}_{c}"] = x
            x = np.maximum(x, 0.0)
            out[f"relu{b}_{c}"] = x
            if wanted <= set(out):  # no deeper layer needed (nor its weights)
                return {k: out[k] for k in wanted}
        x = pool(x, pooling)
        out[f"pool{b}"] = x
        if wanted <= set(out):
            break
    return {k: out[k] for k in wanted}


def gram(f: np.ndarray) -> np.ndarray:
    """Σ over positions of f_i f_j, by explicit loops over channels (slow, obvious)."""
    flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
    c = flat.shape[1]
    g = np.empty((c, c))
    for i in range(c):
        for j in range(c):
            g[i, j] = np.dot(flat[:, i], flat[:, j])
    return g
