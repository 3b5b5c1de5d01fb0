"""Region masks (guided Grams) and the sliced Wasserstein style loss, against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle
from jaxstyle.errors import OptionError
from jaxstyle.losses import guided_gram_matrix, resample_quantiles, sliced_wasserstein_layer_loss
from jaxstyle.objective import LossLayers, loss_terms, make_terms
from jaxstyle.terms import SlicedWassersteinStyleLoss
from jaxstyle.vgg import vgg19_features

WEIGHTS = dict(content_weight=1.0, style_weight=1.0, tv_weight=0.0)


def test_guided_gram_matches_numpy(rng):
    f = rng.standard_normal((1, 6, 7, 5)).astype(np.float32)
    masks = rng.random((3, 6, 7)).astype(np.float32)
    got = np.asarray(guided_gram_matrix(jnp.asarray(f), jnp.asarray(masks)))
    for r in range(3):
        m2 = masks[r].reshape(-1) ** 2
        flat = f[0].reshape(-1, 5).astype(np.float64)
        want = (flat * m2[:, None]).T @ flat / m2.sum() * 42
        np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=1e-5)
    plain = flat.T @ flat
    ones = np.asarray(guided_gram_matrix(jnp.asarray(f), jnp.ones((1, 6, 7))))[0]
    np.testing.assert_allclose(ones, plain, rtol=1e-5)


def _pool_mask(m, times):
    for _ in range(times):
        h, w = m.shape[-2] // 2 * 2, m.shape[-1] // 2 * 2
        m = m[..., :h, :w].reshape(*m.shape[:-2], h // 2, 2, w // 2, 2).mean(axis=(-3, -1))
    return m


def test_masked_style_loss_matches_a_numpy_computation(random_params, rng):
    layers = LossLayers(content=(), style=("relu1_1", "relu2_1", "relu3_1"))
    content = smooth_image(rng, 32, 40)
    styles = [smooth_image(rng, 24, 36), smooth_image(rng, 40, 40)]
    masks = np.zeros((2, 32, 40), np.float32)
    masks[0, :, :22], masks[1, :, 18:] = 1.0, 0.7  # overlapping, soft
    targets = make_terms(random_params, content, styles, layers, masks=list(masks), **WEIGHTS)
    image = smooth_image(rng, 32, 40)
    got = float(loss_terms(jnp.asarray(image), random_params, targets, layers)["style"])

    def grams(img):
        feats = vgg19_features(random_params, jnp.asarray(img)[None], layers.style)
        return {k: np.asarray(v[0], np.float64) for k, v in feats.items()}

    x, s = grams(image), [grams(st) for st in styles]
    want = 0.0
    for pools, name in enumerate(layers.style):
        h, w, c = x[name].shape
        m = _pool_mask(masks.astype(np.float64), pools)
        mass = (m**2).sum(axis=(1, 2))
        for r in range(2):
            flat = x[name].reshape(-1, c)
            g = (flat * (m[r].reshape(-1) ** 2)[:, None]).T @ flat / mass[r] * h * w
            sf = s[r][name].reshape(-1, c)
            a = sf.T @ sf * (h * w) / sf.shape[0]  # the style's Gram, per position, at the output's M
            want += (1 / 3) * (mass[r] / mass.sum()) * ((g - a) ** 2).sum() / (4 * c**2 * (h * w) ** 2)
    assert got == pytest.approx(want, rel=1e-4)


def test_one_all_ones_mask_is_the_plain_loss(random_params, rng):
    layers = LossLayers()
    content, style, image = smooth_image(rng, 32, 32), smooth_image(rng, 40, 32), smooth_image(rng, 32, 32)
    plain = make_terms(random_params, content, [style], layers, **WEIGHTS)
    masked = make_terms(random_params, content, [style], layers, masks=[np.ones((32, 32))], **WEIGHTS)
    a = loss_terms(jnp.asarray(image), random_params, plain, layers)["style"]
    b = loss_terms(jnp.asarray(image), random_params, masked, layers)["style"]
    assert float(b) == pytest.approx(float(a), rel=1e-5)


def test_each_style_paints_its_own_region(random_weights_file, tmp_path):
    """Left half masked to a red style, right half to a blue one: after a short run from
    a grey image, the left half is redder than the right."""
    yy, xx = np.mgrid[0:48, 0:48]
    stripes = (np.sin(xx / 2.0 + yy / 3.0) > 0)[..., None]
    red = np.where(stripes, [0.9, 0.1, 0.1], [0.6, 0.2, 0.1]).astype(np.float32)
    blue = np.where(stripes, [0.1, 0.2, 0.9], [0.1, 0.4, 0.6]).astype(np.float32)
    left = np.zeros((48, 48), np.float32)
    left[:, :24] = 1.0
    out = jaxstyle.stylize(np.full((48, 48, 3), 0.5, np.float32), [red, blue], masks=[left, 1 - left], size=48,
                           iterations=60, optimizer="adam", learning_rate=0.03, content_weight=0.0, tv_weight=0.0, tolerance=0.0,
                           style_layers=["relu1_1", "relu2_1"], weights=random_weights_file)  # fmt: skip
    px = np.asarray(out, np.float32) / 255
    redness = px[..., 0] - px[..., 2]
    assert redness[:, 4:20].mean() > 0.2 and redness[:, 28:44].mean() < -0.2


def test_mask_errors_are_clear(random_weights_file, tmp_path, rng):
    common = dict(size=32, iterations=0, weights=random_weights_file)
    c, s = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    with pytest.raises(OptionError, match="1 region masks for 2 style images"):
        jaxstyle.prepare(c, [s, s], masks=[np.ones((32, 32))], **common)
    with pytest.raises(OptionError, match="not both"):
        jaxstyle.prepare(c, [s, s], masks=[np.ones((32, 32))] * 2, style_blend_weights=[1, 1], **common)
    with pytest.raises(OptionError, match="mask 2 is empty"):
        jaxstyle.prepare(c, [s, s], masks=[np.ones((32, 32)), np.zeros((32, 32))], **common)
    with pytest.raises(OptionError, match="Gram style loss only"):
        jaxstyle.prepare(c, [s], masks=[np.ones((32, 32))], style_loss="sliced_wasserstein", **common)
    with pytest.raises(jaxstyle.ImageError, match=r"values in \[0, 1\]"):
        jaxstyle.prepare(c, [s], masks=[np.full((32, 32), 2.0)], **common)
    with pytest.raises(OptionError, match="style loss must be one of"):
        jaxstyle.prepare(c, [s], style_loss="wasserstein", **common)
    # A mask image of another size is resized to the output's.
    Image.fromarray(np.full((10, 20), 255, np.uint8)).save(tmp_path / "m.png")
    problem = jaxstyle.prepare(c, [s], masks=[tmp_path / "m.png"], **common).item()
    assert np.allclose(np.asarray(problem.terms['style'].term.masks["relu1_1"]), 1.0)


def test_sliced_wasserstein_matches_numpy(rng):
    f = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    directions = rng.standard_normal((4, 3)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0)
    style = rng.standard_normal((7, 9, 4)).astype(np.float64) * 2 + 1
    # The target: the style's sorted projections as 30 quantiles (np.interp, midpoints).
    sp = np.sort(style.reshape(-1, 4) @ directions, axis=0).T  # (K, 63)
    grid = (np.arange(30) + 0.5) / 30
    src = (np.arange(63) + 0.5) / 63
    target = np.stack([np.interp(grid, src, row) for row in sp])
    np.testing.assert_allclose(np.asarray(resample_quantiles(jnp.asarray(sp, jnp.float32), 30)), target, rtol=1e-5, atol=1e-5)
    got = float(sliced_wasserstein_layer_loss(jnp.asarray(f[0]), jnp.asarray(target, jnp.float32), jnp.asarray(directions)))
    mine = np.sort(f[0].reshape(-1, 4).astype(np.float64) @ directions, axis=0).T
    assert got == pytest.approx(np.mean((mine - target) ** 2), rel=1e-5)


def test_sliced_wasserstein_ignores_where_features_are(rng):
    """The distribution, not the layout: shuffled positions give zero loss."""
    f = rng.standard_normal((8, 8, 6)).astype(np.float32)
    shuffled = rng.permutation(f.reshape(-1, 6)).reshape(8, 8, 6)
    directions = rng.standard_normal((6, 6)).astype(np.float32)
    target = np.sort(shuffled.reshape(-1, 6) @ directions, axis=0).T
    loss = sliced_wasserstein_layer_loss(jnp.asarray(f), jnp.asarray(target), jnp.asarray(directions))
    assert float(loss) == pytest.approx(0.0, abs=1e-9)
    other = sliced_wasserstein_layer_loss(jnp.asarray(f * 1.5), jnp.asarray(target), jnp.asarray(directions))
    assert float(other) > 0.1


def test_sliced_wasserstein_runs_end_to_end_and_lowers_its_loss(random_weights_file, rng):
    c, s = smooth_image(rng, 40, 40), smooth_image(rng, 40, 40)
    batch = jaxstyle.prepare(c, [s, s[::-1]], style_loss="sliced_wasserstein", size=40, iterations=20,
                             content_weight=0.0, weights=random_weights_file)  # fmt: skip
    problem = batch.item(0)
    style = problem.terms["style"].term
    assert isinstance(style, SlicedWassersteinStyleLoss) and set(style.quantiles) == set(LossLayers().style)
    before = float(problem.objective(problem.init_image, problem.params, problem.terms))
    (out,) = jaxstyle.solve(batch)
    after = float(problem.objective(jnp.asarray(np.asarray(out, np.float32) / 255), problem.params, problem.terms))
    assert after < 0.9 * before


def test_command_line_masks_and_style_loss(random_weights_file, image_files, tmp_path, capsys):
    from jaxstyle.cli import main

    content, style = image_files
    Image.fromarray(np.tile(np.r_[np.full(20, 255), np.zeros(20)].astype(np.uint8), (30, 1))).save(tmp_path / "left.png")
    Image.fromarray(255 - np.asarray(Image.open(tmp_path / "left.png"))).save(tmp_path / "right.png")
    fast = ["--size", "32", "--iterations", "3", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
            "--weights", str(random_weights_file)]  # fmt: skip
    out = tmp_path / "masked.png"
    argv = ["stylize", str(content), str(style), str(style), "--masks", str(tmp_path / "left.png"),
            str(tmp_path / "right.png"), "-o", str(out), *fast]  # fmt: skip
    assert main(argv) == 0 and Image.open(out).size == (32, 27)
    assert main(["stylize", str(content), str(style), "--style-loss", "sliced_wasserstein", "-o", str(out), *fast]) == 0
    assert "β=6.592e+05 (auto)" in capsys.readouterr().err  # 2e8 · 32·27 / 512²
    code = main(["stylize", str(content), str(style), "--masks", str(tmp_path / "left.png"), str(tmp_path / "right.png"),
                 "-o", str(out), *fast])  # fmt: skip
    assert code == 2 and "2 region masks for 1 style images" in capsys.readouterr().err
