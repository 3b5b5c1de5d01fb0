"""The CPU fast paths compute what their plain definitions compute.

Winograd convolutions, the patch-product first layer, the max-pooling gradient and
the Gram gradient, each checked against numpy (or finite differences), and the
prepared network against the unprepared one.
"""

import jax
import jaxstyle
import jax.numpy as jnp
import numpy as np
import pytest
import reference

from jaxstyle import vgg19_features
from jaxstyle.losses import gram_matrix
from jaxstyle.convolutions import PLAIN, _correlate_patches, _correlate_precomputed, _max_pool, _winograd, backward_kernel, prepare_cpu
from jaxstyle.winograd import winograd_correlate, winograd_kernel, winograd_matrices


def _numpy_input_gradient(c, w):
    # ∂/∂x Σ c·(x ⋆ W) for a "SAME" 3x3 correlation: the full correlation of c with
    # W flipped in space and transposed in channels, written out in numpy.
    flipped = np.flip(w, (0, 1)).swapaxes(2, 3)
    return reference.conv_same(c, flipped, 0.0)


@pytest.mark.parametrize("m, tolerance", [(2, 2e-6), (4, 3e-5)])
@pytest.mark.parametrize("shape", [(1, 12, 16, 8, 5), (2, 9, 7, 3, 4), (1, 1, 6, 2, 2)])
def test_winograd_correlation_matches_numpy(rng, m, tolerance, shape):
    # Sizes that are not multiples of the tile, a batch, a single row.
    n, h, w, cin, cout = shape
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    got = np.asarray(winograd_correlate(jnp.asarray(x), winograd_kernel(jnp.asarray(kernel), m), m))
    for i in range(n):
        want = reference.conv_same(x[i], kernel, 0.0)
        np.testing.assert_allclose(got[i], want, atol=tolerance * np.abs(want).max())


def test_winograd_matrices_reproduce_a_one_dimensional_correlation():
    # F(m, 3) in one dimension: Aᵀ[(G g) ⊙ (Bᵀ d)] equals the m outputs of d ⋆ g.
    rng = np.random.default_rng(0)
    for m in (2, 4):
        bt, g_mat, at = winograd_matrices(m)
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = np.array([d[i : i + 3] @ g for i in range(m)])
        np.testing.assert_allclose(at @ ((g_mat @ g) * (bt @ d)), want, rtol=1e-12, atol=1e-12)


def test_winograd_gradient_is_the_numpy_input_gradient(rng):
    x = rng.standard_normal((1, 10, 13, 6)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 6, 7)).astype(np.float32)
    c = rng.standard_normal((1, 10, 13, 7)).astype(np.float32)
    k = jnp.asarray(kernel)
    u, u_bwd = winograd_kernel(k), winograd_kernel(backward_kernel(k))
    grad = jax.grad(lambda x: jnp.vdot(_correlate_precomputed(_winograd, x, k, u, u_bwd), c))(jnp.asarray(x))
    want = _numpy_input_gradient(c[0].astype(np.float64), kernel.astype(np.float64))
    np.testing.assert_allclose(np.asarray(grad[0]), want, atol=3e-5 * np.abs(want).max())


def test_winograd_results_do_not_depend_on_the_batch(rng):
    # Batched and one-by-one runs must agree exactly (batches are checked against
    # separate runs pixel for pixel, and Adam amplifies any rounding difference).
    x = jnp.asarray(rng.standard_normal((3, 8, 12, 16)).astype(np.float32))
    u = winograd_kernel(jnp.asarray(rng.standard_normal((3, 3, 16, 8)).astype(np.float32)))
    f = jax.jit(winograd_correlate)
    batched = np.asarray(f(x, u))
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(f(x[i : i + 1], u))[0], batched[i])


def test_patch_product_is_the_correlation(rng):
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    got = np.asarray(_correlate_patches(jnp.asarray(x), jnp.asarray(kernel)))
    c = rng.standard_normal(got.shape).astype(np.float32)
    grad = jax.grad(lambda x: jnp.vdot(_correlate_patches(x, jnp.asarray(kernel)), c))(jnp.asarray(x))
    for i in range(2):
        want = reference.conv_same(x[i], kernel, 0.0)
        np.testing.assert_allclose(got[i], want, atol=1e-5 * np.abs(want).max())
        want_grad = _numpy_input_gradient(c[i].astype(np.float64), kernel.astype(np.float64))
        np.testing.assert_allclose(np.asarray(grad[i]), want_grad, atol=1e-5 * np.abs(want_grad).max())


@pytest.mark.parametrize("max_pool", [_max_pool, PLAIN.max_pool], ids=["cpu", "plain"])
def test_max_pool_gradient_goes_to_the_first_maximum(rng, max_pool):
    # Odd sizes (last row and column dropped) and ties: a window's gradient goes to
    # its first maximal element in row-major order, all of it.
    x = rng.integers(0, 3, (2, 7, 9, 4)).astype(np.float32)  # many ties
    g = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, vjp = jax.vjp(max_pool, jnp.asarray(x))
    (got,) = vjp(jnp.asarray(g))
    want_y = np.zeros_like(g)
    want = np.zeros_like(x)
    for n in range(2):
        for i in range(3):
            for j in range(4):
                for ch in range(4):
                    window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, ch].ravel()
                    first = int(np.argmax(window))  # argmax returns the first maximum
                    want_y[n, i, j, ch] = window[first]
                    want[n, 2 * i + first // 2, 2 * j + first % 2, ch] = g[n, i, j, ch]
    np.testing.assert_array_equal(np.asarray(y), want_y)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_gram_gradient_matches_finite_differences(rng):
    f = rng.standard_normal((1, 3, 4, 5))
    weights = rng.standard_normal((5, 5))
    loss = lambda f: float(np.sum(weights * reference.gram(f[0])))  # noqa: E731
    grad = np.asarray(jax.grad(lambda f: jnp.sum(weights * gram_matrix(f)[0]))(jnp.asarray(f, jnp.float32)))
    step, numeric = 1e-5, np.zeros_like(f)
    for index in np.ndindex(f.shape):
        up, down = f.copy(), f.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (loss(up) - loss(down)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


def test_the_cpu_strategy_matches_the_plain_one(random_params, rng):
    # The CPU's fast paths (Winograd, patches, precomputed backward kernels, the max-pool
    # gradient) change features and gradients only by rounding; unprepared params give the
    # prepared ones' results exactly (the strategy computes what is missing on the spot).
    image = jnp.asarray(rng.random((1, 40, 36, 3), np.float32))
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]

    def loss(params, x, convolutions):
        return sum(jnp.sum(f * f) for f in vgg19_features(params, x, layers, convolutions=convolutions).values())

    prepared = prepare_cpu(random_params)
    assert "winograd" in prepared["conv2_1"] and "winograd" not in prepared["conv1_1"] and "kernel_bwd" in prepared["conv1_1"]
    assert "kernel_bwd" not in random_params["conv1_1"]  # the weights themselves stay plain
    want = vgg19_features(random_params, image, layers, convolutions="plain")
    fast = vgg19_features(prepared, image, layers, convolutions="cpu")
    on_the_spot = vgg19_features(random_params, image, layers, convolutions="cpu")
    for name in layers:
        scale = float(jnp.abs(want[name]).max())
        np.testing.assert_allclose(np.asarray(fast[name]), np.asarray(want[name]), atol=1e-4 * scale, err_msg=name)
        np.testing.assert_array_equal(np.asarray(on_the_spot[name]), np.asarray(fast[name]))
    g_want, g_fast = jax.grad(loss, 1)(random_params, image, "plain"), jax.grad(loss, 1)(prepared, image, "cpu")
    assert float(jnp.linalg.norm(g_fast - g_want) / jnp.linalg.norm(g_want)) < 1e-4
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_want), atol=1e-3 * float(jnp.abs(g_want).max()))
    # Preparing prepared params changes nothing.
    assert prepare_cpu(prepared)["conv2_1"].keys() == prepared["conv2_1"].keys()


def test_prepare_chooses_the_strategy_and_keeps_the_params_plain(random_params, rng):
    # "auto" is the CPU's fast paths where JAX's default backend is the CPU, and only there;
    # the params are the same plain pytree either way, and "plain" gives the same objective up to rounding.
    from jaxstyle import prepare

    content, style = rng.random((40, 48, 3)), rng.random((32, 32, 3))
    options = dict(size=48, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))
    auto = prepare(content, style, weights=random_params, **options).item()
    plain = prepare(content, style, weights=random_params, convolutions="plain", **options).item()
    on_cpu = jax.default_backend() == "cpu"
    assert auto.objective.layers.convolutions == ("cpu" if on_cpu else "plain")
    assert plain.objective.layers.convolutions == "plain"
    assert jax.tree.structure(auto.params) == jax.tree.structure(plain.params)  # no backend-dependent entries
    assert "conv2_2" not in auto.params  # deeper than any loss layer: left out
    x = auto.init_image
    (prepared,) = auto.objective.prepare(auto.params)
    a, b = auto.objective(x, prepared, auto.terms), plain.objective(x, plain.params, plain.terms)
    assert abs(float(a) - float(b)) <= 1e-4 * abs(float(b)) and float(b) > 0
    with pytest.raises(jaxstyle.OptionError, match="convolutions must be one of"):
        prepare(content, style, weights=random_params, convolutions="fast", **options)
