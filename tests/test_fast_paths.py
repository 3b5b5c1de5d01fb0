"""The CPU fast paths compute what their plain definitions compute.

Winograd convolutions, the patch-product first layer, the max-pooling gradient and
the Gram gradient, each checked against numpy (or finite differences), and the
prepared network against the unprepared one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

from jaxstyle import vgg19_features
from jaxstyle.losses import gram_matrix
from jaxstyle.vgg import _correlate_patches, _correlate_precomputed, _max_pool, _winograd, add_backward_kernels, backward_kernel
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


def test_max_pool_gradient_goes_to_the_first_maximum(rng):
    # Odd sizes (last row and column dropped) and ties: a window's gradient goes to
    # its first maximal element in row-major order, all of it.
    x = rng.integers(0, 3, (2, 7, 9, 4)).astype(np.float32)  # many ties
    g = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, vjp = jax.vjp(_max_pool, jnp.asarray(x))
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


def test_prepared_network_matches_the_plain_one(random_params, rng):
    # Winograd on (forced, whatever the backend) changes features and gradients only
    # by rounding; without it the prepared network is bit-identical.
    image = jnp.asarray(rng.random((1, 40, 36, 3), np.float32))
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]

    def loss(params, x):
        return sum(jnp.sum(f * f) for f in vgg19_features(params, x, layers).values())

    plain, exact, fast = random_params, add_backward_kernels(random_params, winograd=False), add_backward_kernels(random_params, winograd=True)
    assert "winograd" in fast["conv2_1"] and "winograd" not in fast["conv1_1"] and "winograd" not in exact["conv2_1"]
    want = vgg19_features(plain, image, layers)
    for name, value in vgg19_features(exact, image, layers).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(want[name]))
    for name, value in vgg19_features(fast, image, layers).items():
        scale = float(jnp.abs(want[name]).max())
        np.testing.assert_allclose(np.asarray(value), np.asarray(want[name]), atol=1e-4 * scale, err_msg=name)
    g_want, g_fast = jax.grad(loss, 1)(plain, image), jax.grad(loss, 1)(fast, image)
    assert float(jnp.linalg.norm(g_fast - g_want) / jnp.linalg.norm(g_want)) < 1e-4
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_want), atol=1e-3 * float(jnp.abs(g_want).max()))
    # Preparing prepared params changes nothing, whichever way they were prepared.
    assert add_backward_kernels(exact, winograd=True)["conv2_1"].keys() == exact["conv2_1"].keys()


def test_prepared_weights_choose_the_convolutions(random_params, rng):
    # prepare() turns Winograd on where JAX's default backend is the CPU, and only there;
    # weights prepared without it pass through as they are, with the same objective up to rounding.
    from jaxstyle import prepare

    content, style = rng.random((40, 48, 3)), rng.random((32, 32, 3))
    options = dict(size=48, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))
    auto = prepare(content, style, weights=random_params, **options).item()
    plain = prepare(content, style, weights=add_backward_kernels(random_params, winograd=False), **options).item()
    on_cpu = jax.default_backend() == "cpu"
    assert ("winograd" in auto.params["conv2_1"]) == on_cpu and "winograd" not in plain.params["conv2_1"]
    assert "conv2_2" not in auto.params  # deeper than any loss layer: left out
    x = auto.init_image
    a, b = auto.objective(x, auto.params, auto.targets), plain.objective(x, plain.params, plain.targets)
    assert abs(float(a) - float(b)) <= 1e-4 * abs(float(b)) and float(b) > 0
