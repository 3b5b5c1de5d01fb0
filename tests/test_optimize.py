import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

from jaxstyle import OptionError, vgg19_features
from jaxstyle.optimize import OptimizerConfig, minimize
from jaxstyle.optimize import NonFiniteLossWarning
from jaxstyle.objective import LossLayers, StyleObjective, loss_terms, make_terms

CONTENT_ONLY = LossLayers(content=("relu2_1",), style=())
GATYS_SMALL = LossLayers(content=("relu3_1",), style=("relu1_1", "relu2_1", "relu3_1"))


def _targets(params, layers, content, style=None, **weights):
    style = content if style is None else style
    w = dict(content_weight=1.0, style_weight=1.0, tv_weight=0.0) | weights
    return make_terms(params, content, style, layers, **w)


@pytest.mark.parametrize(
    "optimizer, feature_tol, loss_drop", [("lbfgs", 0.05, 1e-3), ("adam", 0.1, 1e-2)]
)
def test_content_loss_alone_reconstructs_the_content_features(random_params, rng, optimizer, feature_tol, loss_drop):
    content = smooth_image(rng, 32, 32)
    targets = _targets(random_params, CONTENT_ONLY, content)
    x0 = jnp.asarray(rng.random((32, 32, 3), np.float32))  # white noise
    image, history = minimize(
        StyleObjective(CONTENT_ONLY), (random_params, targets), x0, 200,
        OptimizerConfig(optimizer, learning_rate=0.02), chunk_size=50,
    )  # fmt: skip
    got = vgg19_features(random_params, image[None], ["relu2_1"])["relu2_1"]
    want = targets["content"].term.targets["relu2_1"][None]
    start = vgg19_features(random_params, x0[None], ["relu2_1"])["relu2_1"]
    err, err0 = float(jnp.linalg.norm(got - want)), float(jnp.linalg.norm(start - want))
    assert err < feature_tol * float(jnp.linalg.norm(want)), (err, float(jnp.linalg.norm(want)))
    assert err < 0.1 * err0
    assert history[-1] < loss_drop * history[0]
    # Matching relu2_1 pins the pixels down too: the noise has become the content image.
    assert float(jnp.mean(jnp.abs(image - content))) < 0.2 * float(jnp.mean(jnp.abs(x0 - content)))
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_pixels_stay_in_range_when_the_optimum_is_outside(random_params, rng):
    # The content target comes from an image that overshoots [0, 1] on wide areas, so the
    # unconstrained optimum lies outside the box: the bounds must hold and become active.
    overshooting = smooth_image(rng, 32, 32) * 2.0 - 0.5
    outside = (overshooting < 0) | (overshooting > 1)
    assert outside.mean() > 0.2
    layers = LossLayers(content=("relu1_1",), style=())
    targets = _targets(random_params, layers, overshooting, tv_weight=1e-3)
    x0 = jnp.full((32, 32, 3), 0.5, jnp.float32)
    for config in (OptimizerConfig("adam", learning_rate=0.1), OptimizerConfig("lbfgs")):
        image, history = minimize(StyleObjective(layers), (random_params, targets), x0, 40, config)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, config.name
        assert np.all(np.isfinite(history)) and history[-1] < 0.5 * history[0], config.name
        on_bound = np.asarray((image == 0) | (image == 1))
        assert on_bound.mean() > 0.25 * outside.mean(), (config.name, on_bound.mean())  # the bounds are active


def test_chunking_does_not_change_the_result(random_params, rng):
    content, style = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    targets = _targets(random_params, GATYS_SMALL, content, style, style_weight=1e3)
    x0 = jnp.asarray(content)
    seen = []
    a, ha = minimize(StyleObjective(GATYS_SMALL), (random_params, targets), x0, 12, chunk_size=5,
                     callback=lambda p: seen.append((p.iteration, p.iterations, p.loss)))  # fmt: skip
    b, hb = minimize(StyleObjective(GATYS_SMALL), (random_params, targets), x0, 12, chunk_size=12)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    np.testing.assert_allclose(ha, hb, rtol=1e-6)
    assert [s[0] for s in seen] == [5, 10, 12] and all(s[1] == 12 for s in seen)
    assert seen[-1][2] == ha[-1]
    # The reported loss is the objective at the iterate each iteration started from.
    terms = loss_terms(x0, random_params, targets, GATYS_SMALL)
    assert ha[0] == pytest.approx(float(terms["total"]), rel=1e-5)


def test_zero_iterations_returns_the_initial_image(random_params, rng):
    content = smooth_image(rng, 32, 32)
    targets = _targets(random_params, CONTENT_ONLY, content)
    image, history = minimize(StyleObjective(CONTENT_ONLY), (random_params, targets), jnp.asarray(content), 0)
    np.testing.assert_array_equal(np.asarray(image), content)
    assert history == []


def test_bad_optimizer_options(random_params, rng):
    content = smooth_image(rng, 32, 32)
    targets = _targets(random_params, CONTENT_ONLY, content)
    args = (StyleObjective(CONTENT_ONLY), (random_params, targets), jnp.asarray(content))
    with pytest.raises(OptionError, match="unknown optimizer 'sgd'"):
        minimize(*args, 5, OptimizerConfig("sgd"))
    with pytest.raises(OptionError, match="iterations"):
        minimize(*args, -1)
    with pytest.raises(OptionError, match="learning rate"):
        minimize(*args, 5, OptimizerConfig("adam", learning_rate=-1.0))


def _breaks_past(x, target, limit):
    # Finite while the first pixel stays at or below ``limit``, NaN beyond: a run that breaks midway.
    return jnp.where(x[0, 0, 0] > limit, jnp.nan, jnp.sum((x - target) ** 2))


def test_a_non_finite_loss_stops_the_run_with_the_last_finite_image():
    x0, target = jnp.full((8, 8, 3), 0.5, jnp.float32), jnp.ones((8, 8, 3), jnp.float32)
    config = OptimizerConfig("adam", learning_rate=0.02)  # ≈0.02 per step: crosses 0.8 midway
    seen = []
    with pytest.warns(NonFiniteLossWarning, match="NaN or infinite at iteration"):
        image, history = minimize(_breaks_past, (target, 0.8), x0, 60, config, chunk_size=10,
                                  callback=lambda p: seen.append(p.iteration))  # fmt: skip
    assert 10 < len(history) < 60 and np.all(np.isfinite(history))
    assert float(image[0, 0, 0]) <= 0.8 and np.isfinite(float(_breaks_past(image, target, 0.8)))
    assert seen and all(i <= len(history) for i in seen)  # no progress reported past the break
    # The image is the iterate before the break, as a plain run of that many iterations gives it.
    clean, _ = minimize(_breaks_past, (target, 0.8), x0, len(history) - 1, config)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(clean))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_loss_that_is_not_finite_from_the_start_returns_the_start(optimizer):
    # (L-BFGS's line search itself refuses steps into a NaN region; at the start it cannot.)
    x0, target = jnp.full((8, 8, 3), 0.5, jnp.float32), jnp.ones((8, 8, 3), jnp.float32)
    with pytest.warns(NonFiniteLossWarning, match="iteration 1 "):
        image, history = minimize(_breaks_past, (target, 0.4), x0, 20, OptimizerConfig(optimizer))
    assert history == []
    np.testing.assert_array_equal(np.asarray(image), np.asarray(x0))
