import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
from conftest import smooth_image

from jaxstyle import OptionError
from jaxstyle.losses import content_loss, gram_matrix, style_layer_loss, total_variation
from jaxstyle.objective import LossLayers, loss_terms, make_terms
from jaxstyle.terms import ContentLoss, GramStyleLoss, Sum, TotalVariation, Weighted, evaluate
from jaxstyle.optimize import box


def test_gram_matrix_matches_numpy_loops(rng):
    f = rng.standard_normal((1, 5, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(gram_matrix(jnp.asarray(f)))[0], reference.gram(f[0]), rtol=1e-5)


def test_style_layer_loss_hand_derived():
    # F = 1 everywhere (M positions, N channels), A = 0: G = M·1, Σ G² = N²M², E = 1/4.
    f = jnp.ones((1, 3, 4, 5))
    assert float(style_layer_loss(f, jnp.zeros((5, 5)))) == pytest.approx(0.25, rel=1e-6)
    # ... and E = 0 against its own Gram matrix.
    assert float(style_layer_loss(f, gram_matrix(f)[0])) == 0.0


def test_style_layer_loss_matches_paper_formula(rng):
    f = rng.random((1, 6, 5, 4)).astype(np.float32)
    a = rng.random((4, 4)) * 30
    n, m = 4, 30
    want = np.sum((reference.gram(f[0]) - a) ** 2) / (4 * n**2 * m**2)
    assert float(style_layer_loss(jnp.asarray(f), jnp.asarray(a, jnp.float32))) == pytest.approx(want, rel=1e-5)


def test_content_loss_hand_derived():
    # ½ Σ (2 − 0)² over 2·3·4 = 24 elements = 48.
    assert float(content_loss(jnp.full((1, 2, 3, 4), 2.0), jnp.zeros((1, 2, 3, 4)))) == 48.0


def test_total_variation_hand_derived():
    # A horizontal ramp of step d: only x-differences, H·(W−1)·C of them, each d².
    h, w, d = 4, 6, 0.1
    ramp = np.broadcast_to((np.arange(w) * d)[None, :, None], (h, w, 3)).astype(np.float32)
    assert float(total_variation(jnp.asarray(ramp))) == pytest.approx(h * (w - 1) * 3 * d * d, rel=1e-5)
    noisy = np.random.default_rng(0).random((5, 5, 3))
    want = np.sum(np.diff(noisy, axis=0) ** 2) + np.sum(np.diff(noisy, axis=1) ** 2)
    assert float(total_variation(jnp.asarray(noisy, jnp.float32))) == pytest.approx(want, rel=1e-5)


def test_terms_weight_layers_and_add_up_as_defined():
    # F = 1 on 2×2 positions × 3 channels: E = 1/4 against A = 0 (hand-derived above), 0 against its own Gram.
    f = {"a": jnp.ones((2, 2, 3)), "b": jnp.ones((2, 2, 3))}
    style = GramStyleLoss({"a": jnp.zeros((3, 3)), "b": gram_matrix(f["b"])}, {"a": 0.2, "b": 0.8})
    assert style.layers == ("a", "b")
    assert float(style(None, f)) == pytest.approx(0.2 * 0.25)
    content = ContentLoss({"b": jnp.zeros((2, 2, 3))})  # ½ Σ 1² over 12 elements = 6
    image = jnp.zeros((3, 3, 3)).at[1, 1].set(1.0)  # TV: 4 neighbours × 3 channels differ by 1 = 12
    terms = {"content": Weighted(10.0, content), "style": Weighted(100.0, style), "tv": Weighted(1000.0, TotalVariation()),
             "extra": Weighted(2.0, Sum((content, TotalVariation())))}  # fmt: skip
    got = evaluate(terms, image, f)
    assert {k: float(v) for k, v in got.items()} == pytest.approx(
        {"content": 6.0, "style": 0.05, "tv": 12.0, "extra": 18.0, "total": 60 + 5 + 12000 + 36})


def test_targets_against_numpy_for_style_of_another_size(random_params, rng):
    # A_l is the style image's Gram, rescaled by M_l(output)/M_l(style).
    layers = LossLayers(content=("relu2_1",), style=("relu1_1", "relu2_1"))
    content, style = smooth_image(rng, 16, 24), smooth_image(rng, 32, 20)
    t = make_terms(random_params, content, style, layers, content_weight=1, style_weight=1, tv_weight=0)
    get_conv = lambda b, c: (random_params[f"conv{b}_{c}"]["kernel"], random_params[f"conv{b}_{c}"]["bias"])
    feats = reference.vgg_features(get_conv, style, ("relu1_1", "relu2_1"))
    for name, m_out in (("relu1_1", 16 * 24), ("relu2_1", 8 * 12)):
        f = feats[name]
        want = reference.gram(f) * m_out / (f.shape[0] * f.shape[1])
        np.testing.assert_allclose(np.asarray(t["style"].term.grams[name]), want, rtol=2e-4, atol=1e-3 * np.abs(want).max())
    assert t["style"].term.layer_weights == {"relu1_1": 0.5, "relu2_1": 0.5}


def test_blended_style_targets_are_the_weighted_grams(random_params, rng):
    # jcjohnson's -style_blend_weights: A_l = Σ b_i A_l^(i), b normalised to sum 1.
    layers = LossLayers(content=("relu1_1",), style=("relu1_1", "relu2_1"))
    content, a, b = smooth_image(rng, 16, 16), smooth_image(rng, 16, 16), smooth_image(rng, 24, 20)
    t = make_terms(random_params, content, [a, b], layers, content_weight=1, style_weight=1, tv_weight=0,
                     style_blend_weights=[7, 3])  # fmt: skip
    get_conv = lambda b_, c: (random_params[f"conv{b_}_{c}"]["kernel"], random_params[f"conv{b_}_{c}"]["bias"])
    fa, fb = (reference.vgg_features(get_conv, x, ("relu1_1", "relu2_1")) for x in (a, b))
    for name, m_out in (("relu1_1", 16 * 16), ("relu2_1", 8 * 8)):
        ga, gb = (reference.gram(f[name]) * m_out / (f[name].shape[0] * f[name].shape[1]) for f in (fa, fb))
        want = 0.7 * ga + 0.3 * gb
        np.testing.assert_allclose(np.asarray(t["style"].term.grams[name]), want, rtol=2e-4, atol=1e-3 * np.abs(want).max())
    for bad, message in [([1.0], "1 style blend weights for 2"), ([0, 0], "not all be 0"), ([1, -1], "finite number")]:
        with pytest.raises(OptionError, match=message):
            make_terms(random_params, content, [a, b], layers, content_weight=1, style_weight=1, tv_weight=0,
                         style_blend_weights=bad)  # fmt: skip


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("term", ["content", "style", "tv"])
def test_gradient_matches_finite_differences(random_params, rng, term, pooling):
    # In float64, so that central differences with a tiny step are exact to ~1e-7
    # and rarely straddle a ReLU or max-pool kink.
    layers = LossLayers(content=("relu2_2",), style=("relu1_1", "relu2_1", "relu3_1"), pooling=pooling)
    content, style = smooth_image(rng, 24, 24), smooth_image(rng, 24, 24)
    t = make_terms(random_params, content, style, layers, content_weight=1, style_weight=1, tv_weight=1)
    with jax.enable_x64(True):
        x0 = jnp.asarray(0.25 + 0.5 * smooth_image(rng, 24, 24), jnp.float64)  # inside (0, 1)
        f = jax.jit(lambda x: loss_terms(x, random_params, t, layers)[term])
        grad = jax.grad(f)(x0)
        assert grad.dtype == jnp.float64
        for k in range(3):
            v = jnp.asarray(rng.standard_normal(x0.shape))
            v = v / jnp.linalg.norm(v)
            eps = 1e-6
            fd = (float(f(x0 + eps * v)) - float(f(x0 - eps * v))) / (2 * eps)
            analytic = float(jnp.vdot(grad, v))
            assert analytic == pytest.approx(fd, rel=1e-4, abs=1e-8 * float(jnp.linalg.norm(grad))), (term, k)


def test_box_gradient_frees_pixels_to_move_inward():
    # f(z) = Σ c·z: the gradient c passes except where a descent step would leave [0, 1].
    x = jnp.array([-0.5, 0.0, 0.5, 1.0, 1.5, 0.0, 1.0])
    c = jnp.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0])
    g = jax.grad(lambda x: jnp.sum(c * box(x)))(x)
    # at/below 0 with c > 0 (descent pushes below 0): 0; at/above 1 with c < 0: 0; else c.
    np.testing.assert_array_equal(np.asarray(g), [0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(box(x)), np.clip(np.asarray(x), 0, 1))


def test_style_losses_trace_at_sizes_whose_n_times_m_passes_int32():
    # 64 channels × 6000² positions = 2.3e9 > 2³¹: the normalisation must not be an int32.
    big = jax.ShapeDtypeStruct((1, 6000, 6000, 64), jnp.float32)
    jax.jit(style_layer_loss).lower(big, jax.ShapeDtypeStruct((64, 64), jnp.float32))
    from jaxstyle.losses import guided_style_layer_loss

    masks = jax.ShapeDtypeStruct((2, 6000, 6000), jnp.float32)
    jax.jit(guided_style_layer_loss).lower(big, masks, jax.ShapeDtypeStruct((2, 64, 64), jnp.float32))
