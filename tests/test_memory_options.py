"""Rematerialisation and bfloat16 compute: the same objective, less memory or precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PLAIN, smooth_image

import jaxstyle
from jaxstyle.errors import OptionError
from jaxstyle.vgg import vgg19_features

FEATURES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def test_remat_changes_neither_features_nor_gradients(random_params, rng):
    image = jnp.asarray(smooth_image(rng, 40, 48))[None]

    def loss(x, remat):
        feats = vgg19_features(random_params, x, FEATURES, remat=remat, convolutions="plain")
        return sum(jnp.sum(jnp.sin(f)) for f in feats.values())  # every feature matters

    a, ga = jax.value_and_grad(loss)(image, False)
    b, gb = jax.value_and_grad(loss)(image, True)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    np.testing.assert_allclose(np.asarray(gb), np.asarray(ga), rtol=1e-5, atol=1e-6 * float(jnp.abs(ga).max()))


def test_remat_is_recomputation_in_the_program(random_params, rng):
    """With remat the backward pass recomputes the blocks: more convolutions in the program."""
    image = jnp.asarray(smooth_image(rng, 32, 32))[None]

    def convolutions(remat):
        grad = jax.grad(lambda x: jnp.sum(vgg19_features(random_params, x, ("relu3_1",), remat=remat, convolutions="plain")["relu3_1"]))
        return str(jax.make_jaxpr(grad)(image)).count("conv_general_dilated")

    assert convolutions(True) > convolutions(False)


def test_bfloat16_compute_stays_close_to_float32(random_weights_file, rng):
    content, style = smooth_image(rng, 48, 48), smooth_image(rng, 48, 48)
    common = dict(PLAIN, size=48, weights=random_weights_file)
    f32 = jaxstyle.prepare(content, style, **common).item()
    bf16 = jaxstyle.prepare(content, style, compute_dtype="bfloat16", **common).item()
    feats = vgg19_features(bf16.params, bf16.init_image[None], ("relu2_1",), compute_dtype="bfloat16")
    assert feats["relu2_1"].dtype == jnp.bfloat16
    x = jnp.clip(f32.init_image + 0.1 * jnp.asarray(rng.standard_normal(f32.init_image.shape), jnp.float32), 0, 1)
    va, ga = jax.value_and_grad(lambda x: f32.objective(x, f32.params, f32.terms))(x)
    vb, gb = jax.value_and_grad(lambda x: bf16.objective(x, bf16.params, bf16.terms))(x)
    assert vb.dtype == jnp.float32 and gb.dtype == jnp.float32  # the loss and the image stay float32
    assert float(vb) == pytest.approx(float(va), rel=2e-2)
    cosine = float(jnp.vdot(ga, gb) / (jnp.linalg.norm(ga) * jnp.linalg.norm(gb)))
    assert cosine > 0.97 and float(vb) != float(va)  # (0.985 with these random weights)


def test_compute_dtype_is_checked(random_weights_file, rng):
    c = smooth_image(rng, 32, 32)
    with pytest.raises(OptionError, match="compute dtype must be one of"):
        jaxstyle.prepare(c, c, size=32, compute_dtype="float16", weights=random_weights_file)
