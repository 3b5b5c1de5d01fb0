"""Checks with the real VGG-19 weights (fetched by 'jaxstyle weights fetch'); few and small."""

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import reference
from conftest import smooth_image

import jaxstyle
from jaxstyle import load_weights, vgg19_features
from jaxstyle.objective import loss_terms
from jaxstyle.fetch import KERAS_MD5

pytestmark = pytest.mark.real_weights


@pytest.fixture(scope="module")
def real_params(real_weights_path):
    return load_weights(real_weights_path)


def _style_image(rng, h, w):
    """Bold diagonal colour stripes: a 'style' far from the smooth content."""
    yy, xx = np.mgrid[0:h, 0:w]
    phase = (xx + yy) / 6.0
    img = np.stack([np.sin(phase), np.sin(phase + 2.1), np.sin(1.7 * phase + 4.2)], -1)
    return ((img + 1) / 2 * 0.9 + 0.05 * rng.random((h, w, 3))).astype(np.float32)


def test_converted_weights_give_the_features_of_the_original_file(real_params, real_weights_path, real_keras_file, rng):
    h5_path = real_keras_file
    assert jaxstyle.weights.read_weights_file(real_weights_path)["source"]["md5"] == KERAS_MD5
    image = smooth_image(rng, 40, 36)
    wanted = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
    with h5py.File(h5_path, "r") as f:
        def get_conv(b, c):
            g = f[f"block{b}_conv{c}"]
            return np.asarray(g[f"block{b}_conv{c}_W_1:0"]), np.asarray(g[f"block{b}_conv{c}_b_1:0"])

        want = reference.vgg_features(get_conv, image, wanted)
    got = vgg19_features(real_params, jnp.asarray(image[None]), wanted)
    for name in wanted:
        scale = np.abs(want[name]).max()
        assert scale > 1.0  # real activations, not an all-zero layer
        np.testing.assert_allclose(np.asarray(got[name][0]), want[name], atol=1e-4 * scale, err_msg=name)


def test_short_stylization_cuts_the_style_loss_tenfold(real_params, rng):
    content, style = smooth_image(rng, 64, 64), _style_image(rng, 64, 64)
    problem = jaxstyle.prepare(content, style, size=64, iterations=40, weights=real_params)
    item = problem.item(0)
    layers = item.objective.layers
    before = loss_terms(item.init_image, item.params, item.terms, layers)
    (result,) = jaxstyle.solve(problem)
    after = loss_terms(jnp.asarray(np.asarray(result, np.float32) / 255.0), item.params, item.terms, layers)
    assert float(after["style"]) < 0.1 * float(before["style"]), (float(before["style"]), float(after["style"]))
    assert float(after["total"]) < float(before["total"])


def test_same_seed_gives_the_identical_image(real_params, rng):
    content, style = smooth_image(rng, 48, 48), _style_image(rng, 48, 48)
    run = lambda: np.asarray(jaxstyle.stylize(content, style, size=48, iterations=8, init="noise", seed=7, weights=real_params))  # noqa: E731
    first, second = run(), run()
    np.testing.assert_array_equal(first, second)
    assert first.std() > 5  # a real picture, not a constant
