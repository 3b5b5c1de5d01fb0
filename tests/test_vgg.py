import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

from jaxstyle import OptionError, vgg19_features
from jaxstyle.vgg import LAYERS
from jaxstyle.vgg import CAFFE_PREPROCESSING, Preprocessing, min_image_side, preprocess


def test_layer_names_follow_the_network():
    assert LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYERS[-1] == "pool5" and len(LAYERS) == 16 * 2 + 5


def test_feature_shapes_per_layer(random_params, rng):
    image = jnp.asarray(rng.random((2, 48, 40, 3), np.float32))
    wanted = ("relu1_1", "pool1", "conv2_2", "relu3_4", "pool3", "relu4_2", "relu5_1")
    feats = vgg19_features(random_params, image, wanted)
    assert set(feats) == set(wanted)
    assert feats["relu1_1"].shape == (2, 48, 40, 64)
    assert feats["pool1"].shape == (2, 24, 20, 64)
    assert feats["conv2_2"].shape == (2, 24, 20, 128)
    assert feats["relu3_4"].shape == (2, 12, 10, 256)
    assert feats["pool3"].shape == (2, 6, 5, 256)
    assert feats["relu4_2"].shape == (2, 6, 5, 512)
    assert feats["relu5_1"].shape == (2, 3, 2, 512)  # odd 5 -> 2: the last column is dropped


@pytest.mark.parametrize("convolutions", ["plain", "cpu"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_features_match_numpy(random_params, rng, pooling, convolutions):
    image = rng.random((20, 18, 3)).astype(np.float32)
    wanted = ("conv1_1", "relu1_2", "pool1", "relu2_1", "pool2", "relu3_1")
    got = vgg19_features(random_params, jnp.asarray(image[None]), wanted, pooling=pooling, convolutions=convolutions)
    get_conv = lambda b, c: (random_params[f"conv{b}_{c}"]["kernel"], random_params[f"conv{b}_{c}"]["bias"])
    want = reference.vgg_features(get_conv, image, wanted, pooling)
    for name in wanted:
        scale = np.abs(want[name]).max()
        np.testing.assert_allclose(np.asarray(got[name][0]), want[name], atol=2e-5 * scale, err_msg=name)


def test_only_layers_up_to_the_deepest_are_needed(random_params, rng):
    # Params without block 3+ still give block-2 features; asking for deeper ones fails clearly.
    shallow = {k: v for k, v in random_params.items() if k in ("input", "conv1_1", "conv1_2", "conv2_1")}
    image = jnp.asarray(rng.random((1, 16, 16, 3), np.float32))
    assert vgg19_features(shallow, image, ["relu2_1"])["relu2_1"].shape == (1, 8, 8, 128)
    with pytest.raises(OptionError, match="conv2_2"):
        vgg19_features(shallow, image, ["relu2_2"])


def test_unknown_layer_names_are_refused(random_params):
    with pytest.raises(OptionError, match="relu9_9"):
        vgg19_features(random_params, jnp.zeros((1, 16, 16, 3)), ["relu1_1", "relu9_9"])


def test_preprocessing_matches_hand_written_caffe_convention(rng):
    params = {"input": CAFFE_PREPROCESSING.input_params()}
    image = rng.random((4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(preprocess(params, image)), reference.caffe_input(image), atol=1e-3)


def test_preprocessing_rgb_mean_std():
    p = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    params = {"input": p.input_params()}
    x = np.array([[[0.2, 0.5, 0.9]]], np.float32)
    want = (x - np.array(p.mean)) / np.array(p.std)
    np.testing.assert_allclose(np.asarray(preprocess(params, x)), want, rtol=1e-5)


def test_min_image_side():
    assert min_image_side(["relu1_1"]) == 1
    assert min_image_side(["pool1"]) == 2
    assert min_image_side(["relu4_2", "relu5_1"]) == 16


def test_features_are_jittable_and_pure(random_params, rng):
    image = jnp.asarray(rng.random((1, 16, 16, 3), np.float32))
    f = jax.jit(lambda p, x: vgg19_features(p, x, ["relu2_1"])["relu2_1"])
    a, b = f(random_params, image), f(random_params, image)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_backward_kernel_is_the_input_gradient_of_a_correlation(rng):
    # Independent check of the identity: the gradient of Σ c·(x ⋆ W) in numpy.
    from jaxstyle.convolutions import backward_kernel

    x = rng.standard_normal((5, 6, 2))
    w = rng.standard_normal((3, 3, 2, 4))
    c = rng.standard_normal((5, 6, 4))
    want = np.zeros_like(x)  # ∂/∂x Σ_pos,o c[pos,o] Σ_{dy,dx,i} xpad[pos+d, i] W[d, i, o]
    cpad = np.pad(c, ((1, 1), (1, 1), (0, 0)))
    for dy in range(3):
        for dx in range(3):
            want += cpad[2 - dy : 2 - dy + 5, 2 - dx : 2 - dx + 6] @ w[dy, dx].T
    got = reference.conv_same(c, np.asarray(backward_kernel(jnp.asarray(w))), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_backward_kernels_change_no_value_or_gradient(random_params, rng):
    # A correlation whose input gradient runs with a precomputed backward kernel (the CPU
    # strategy's) gives the same values, bit for bit, and the same gradients.
    from jaxstyle.convolutions import _correlate_precomputed, backward_kernel, correlate

    kernel = jnp.asarray(random_params["conv2_1"]["kernel"])
    x = jnp.asarray(rng.random((1, 12, 10, 64), np.float32))
    c = jnp.asarray(rng.standard_normal((1, 12, 10, 128)), jnp.float32)

    def f(k, x, fast):
        y = _correlate_precomputed(correlate, x, k, k, backward_kernel(k)) if fast else correlate(x, k)
        return jnp.vdot(y, c)

    np.testing.assert_array_equal(np.asarray(f(kernel, x, True)), np.asarray(f(kernel, x, False)))
    gx_fast, gx = jax.grad(f, 1)(kernel, x, True), jax.grad(f, 1)(kernel, x, False)
    np.testing.assert_allclose(np.asarray(gx_fast), np.asarray(gx), rtol=1e-5, atol=1e-6 * float(jnp.abs(gx).max()))
    gk_fast, gk = jax.grad(f)(kernel, x, True), jax.grad(f)(kernel, x, False)
    np.testing.assert_allclose(np.asarray(gk_fast), np.asarray(gk), rtol=1e-4, atol=1e-6 * float(jnp.abs(gk).max()))
