"""Colour preservation and style scale: each mode's defining property."""

import numpy as np
import pytest
from conftest import PLAIN, smooth_image
from PIL import Image

import jaxstyle
from jaxstyle import OptionError
from jaxstyle.color import match_color_statistics, match_luminance, rgb_to_yiq, with_content_chroma, yiq_to_rgb
from jaxstyle.images import fit_size, to_array, to_pil
from jaxstyle.objective import LossLayers, make_terms

FAST = dict(PLAIN, size=32, iterations=6, style_weight=1e4, style_layers=("relu1_1", "relu2_1", "relu3_1"),
            content_layers=("relu3_1",))  # fmt: skip


def _mid(rng, h, w):
    # Colours well inside [0, 1], so that no clipping blurs the properties.
    return 0.25 + 0.5 * smooth_image(rng, h, w)


def test_yiq_by_hand():
    np.testing.assert_allclose(rgb_to_yiq(np.array([1.0, 1.0, 1.0])), [1, 0, 0], atol=1e-6)  # white: no chroma
    np.testing.assert_allclose(rgb_to_yiq(np.array([1.0, 0.0, 0.0]))[0], 0.299)
    x = np.random.default_rng(0).random((5, 3))
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-12)


def test_luminance_matching_moves_mean_and_std_to_the_content(rng):
    content, style = _mid(rng, 20, 24), 0.1 + 0.2 * smooth_image(rng, 30, 30)
    out = match_luminance(style, content).astype(np.float64)
    assert np.ptp(out, axis=-1).max() == 0  # grey
    y_content = content @ np.array([0.299, 0.587, 0.114])
    assert out[..., 0].mean() == pytest.approx(y_content.mean(), abs=1e-4)
    assert out[..., 0].std() == pytest.approx(y_content.std(), rel=1e-3)


def test_histogram_matching_moves_mean_and_covariance_to_the_content(rng):
    content, style = _mid(rng, 20, 24), smooth_image(rng, 30, 30)[..., ::-1] * [0.9, 0.3, 0.5]
    out = match_color_statistics(style, content, clip=False).reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), c.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(c, rowvar=False), atol=1e-5)


def test_chroma_swap_keeps_luminance_and_takes_the_content_chroma(rng):
    image, content = _mid(rng, 16, 16), _mid(rng, 16, 16)
    out = rgb_to_yiq(with_content_chroma(image, content))
    np.testing.assert_allclose(out[..., 0], rgb_to_yiq(image)[..., 0], atol=1e-5)
    np.testing.assert_allclose(out[..., 1:], rgb_to_yiq(content)[..., 1:], atol=1e-5)


@pytest.mark.parametrize("mode", ["luminance", "swap"])
def test_stylized_output_has_the_content_chroma(random_params, rng, mode):
    content = _mid(rng, 27, 32)
    style = np.clip(smooth_image(rng, 30, 30) * [1.0, 0.2, 0.1] + [0, 0, 0.5], 0, 1)  # a red/blue painting
    out = np.asarray(jaxstyle.stylize(content, style, preserve_color=mode, weights=random_params, **FAST), np.float64) / 255
    plain = np.asarray(jaxstyle.stylize(content, style, weights=random_params, **FAST), np.float64) / 255
    chroma = lambda x: rgb_to_yiq(x)[..., 1:]  # noqa: E731
    assert np.abs(chroma(out) - chroma(content)).mean() < 0.01  # uint8 rounding and a little clipping
    assert np.abs(chroma(plain) - chroma(content)).mean() > 0.02  # without it the colours do move
    if mode == "luminance":
        problem = jaxstyle.prepare(content, style, preserve_color=mode, weights=random_params, **FAST).item()
        assert np.ptp(np.asarray(problem.init_image), axis=-1).max() == 0  # the transfer itself is grey


def test_histogram_mode_computes_the_style_targets_from_recoloured_style(random_params, rng):
    content, style = _mid(rng, 27, 32), smooth_image(rng, 32, 32) * [1.0, 0.3, 0.2]
    problem = jaxstyle.prepare(content, style, preserve_color="histogram", weights=random_params, **FAST).item()
    layers = LossLayers(FAST["content_layers"], FAST["style_layers"])
    style_arr = to_array(to_pil(style), fit_size(32, 32, 32))
    want = make_terms(problem.params, to_array(to_pil(content), (32, 27)),
                        match_color_statistics(style_arr, to_array(to_pil(content), (32, 27))), layers,
                        content_weight=1, style_weight=1e4, tv_weight=0)  # fmt: skip
    for name in layers.style:
        np.testing.assert_allclose(problem.terms['style'].term.grams[name], want['style'].term.grams[name], rtol=1e-5)


def test_style_scale_resizes_the_style_relative_to_the_output(random_params, rng):
    content, style = _mid(rng, 48, 64), smooth_image(rng, 60, 60)
    layers = LossLayers(FAST["content_layers"], FAST["style_layers"])
    problem = jaxstyle.prepare(content, style, style_scale=0.5, weights=random_params, **{**FAST, "size": 64}).item()
    small_style = np.asarray(to_pil(style).resize((32, 32), Image.Resampling.LANCZOS), np.float32) / 255
    want = make_terms(problem.params, np.asarray(problem.init_image), small_style, layers,
                        content_weight=1, style_weight=1e4, tv_weight=0)  # fmt: skip
    for name in layers.style:
        np.testing.assert_allclose(problem.terms['style'].term.grams[name], want['style'].term.grams[name], rtol=1e-4)
    with pytest.raises(OptionError, match="style scale"):
        jaxstyle.prepare(content, style, style_scale=0, weights=random_params, **FAST)
    with pytest.raises(OptionError, match="preserve_color"):
        jaxstyle.prepare(content, style, preserve_color="sepia", weights=random_params, **FAST)
