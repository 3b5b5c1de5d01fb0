"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving Color in
Neural Artistic Style Transfer"). Arrays are float H×W×3 RGB in [0, 1], numpy.

- ``luminance``: stylize luminance only. Both images become grey (their YIQ luminance
  Y), the style's Y first matched to the content's mean and standard deviation,
  y' = σ_c/σ_s · (y_s − μ_s) + μ_c; the result's Y is then joined to the content's I, Q.
- ``histogram``: before the transfer, the style's colours are mapped to the content's
  mean and covariance, x' = A (x − μ_s) + μ_c with A = Σ_c^½ Σ_s^−½ (symmetric roots).
- ``swap``: an ordinary transfer, then the result's Y joined to the content's I, Q.
"""

from __future__ import annotations

import numpy as np

MODES = ("luminance", "histogram", "swap")

#: NTSC RGB → YIQ; Y is luminance, I and Q chroma.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def grey(rgb: np.ndarray) -> np.ndarray:
    """The luminance Y of ``rgb`` in all three channels (float32)."""
    y = rgb_to_yiq(rgb)[..., :1]
    return np.clip(np.repeat(y, 3, axis=-1), 0, 1).astype(np.float32)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Style as grey, its luminance's mean and std moved to the content's."""
    ys, yc = rgb_to_yiq(style)[..., 0], rgb_to_yiq(content)[..., 0]
    y = (yc.std() / max(ys.std(), 1e-8)) * (ys - ys.mean()) + yc.mean()
    return np.clip(np.repeat(y[..., None], 3, axis=-1), 0, 1).astype(np.float32)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-10)
    return (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T


def match_color_statistics(style: np.ndarray, content: np.ndarray, clip: bool = True) -> np.ndarray:
    """Style with its colour mean and covariance moved to the content's (linear transfer)."""
    s, c = np.asarray(style, np.float64).reshape(-1, 3), np.asarray(content, np.float64).reshape(-1, 3)
    mu_s, mu_c = s.mean(0), c.mean(0)
    a = _sqrtm(np.cov(c, rowvar=False)) @ _sqrtm(np.cov(s, rowvar=False), inverse=True)
    out = ((s - mu_s) @ a.T + mu_c).reshape(np.shape(style))
    return (np.clip(out, 0, 1) if clip else out).astype(np.float32)


def with_content_chroma(image: np.ndarray, content: np.ndarray) -> np.ndarray:
    """``image``'s luminance joined to ``content``'s chroma (I, Q), clipped to [0, 1]."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(image)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0, 1).astype(np.float32)
