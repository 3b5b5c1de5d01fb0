"""A loss term of the user's own joins the objective through the public API."""

import runpy
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PLAIN, smooth_image
from flax import struct

import jaxstyle
from jaxstyle import OptionError
from jaxstyle.objective import loss_terms

FAST = dict(PLAIN, size=32, iterations=8, style_weight=1e4, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))


class MeanRed(struct.PyTreeNode):
    """w · (1 − mean red)²: wants a redder picture."""

    weight: jnp.ndarray

    layers: tuple = struct.field(pytree_node=False, default=())

    def __call__(self, image, features):
        return self.weight * (1.0 - jnp.mean(image[..., 0])) ** 2


class FeatureEnergy(struct.PyTreeNode):
    """w · Σ relu1_1²: reads a VGG-19 layer."""

    weight: jnp.ndarray
    layers: tuple = struct.field(pytree_node=False, default=("relu1_1",))

    def __call__(self, image, features):
        return self.weight * jnp.sum(features["relu1_1"] ** 2)


def test_the_term_is_added_to_the_total_as_defined(random_params, rng):
    content, style = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    terms = [MeanRed(jnp.asarray(7.0)), FeatureEnergy(jnp.asarray(1e-6))]
    item = jaxstyle.prepare(content, style, extra_terms=terms, weights=random_params, **FAST).item()
    plain = jaxstyle.prepare(content, style, weights=random_params, **FAST).item()
    x = item.init_image
    got, base = loss_terms(x, item.params, item.terms, item.objective.layers), loss_terms(x, plain.params, plain.terms, plain.objective.layers)
    relu = np.asarray(jaxstyle.vgg19_features(item.params, x[None], ["relu1_1"])["relu1_1"], np.float64)
    want = 7.0 * (1 - np.asarray(x)[..., 0].mean()) ** 2 + 1e-6 * (relu**2).sum()  # by hand
    assert float(got["extra"]) == pytest.approx(want, rel=1e-4)
    assert float(got["total"]) == pytest.approx(float(base["total"]) + want, rel=1e-5)


def test_the_term_changes_the_output_the_way_it_says(random_params, rng):
    content, style = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    options = dict(FAST, weights=random_params, optimizer="adam", learning_rate=0.02)
    plain = np.asarray(jaxstyle.stylize(content, style, **options), np.float64) / 255
    red = np.asarray(jaxstyle.stylize(content, style, extra_terms=[MeanRed(jnp.asarray(1e4))], **options), np.float64) / 255
    assert red[..., 0].mean() > plain[..., 0].mean() + 0.05  # redder, as the term asks
    # In a batch every item gets the term; the batch equals the solo run.
    batch = jaxstyle.stylize_batch(content, [style, style], extra_terms=[MeanRed(jnp.asarray(1e4))], **options)
    assert np.abs(np.asarray(batch[0], int) - np.round(red * 255).astype(int)).max() <= 1


def test_bad_terms_are_option_errors(random_params, rng):
    image = smooth_image(rng, 32, 32)
    for terms, text in [([lambda image, features: 0.0], "layers"), ("red", "list of loss terms"),
                        ([FeatureEnergy(jnp.asarray(1.0), layers=("relu9_9",))], "relu9_9")]:  # fmt: skip
        with pytest.raises(OptionError, match=text):
            jaxstyle.prepare(image, image, extra_terms=terms, weights=random_params, **FAST)


def test_the_example_runs(random_weights_file, tmp_path, monkeypatch, rng, capsys):
    from PIL import Image

    for name in ("c.png", "s.png"):
        Image.fromarray((smooth_image(rng, 48, 64) * 255).astype(np.uint8)).save(tmp_path / name)
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(random_weights_file))
    example = Path(__file__).parent.parent / "examples" / "custom_term.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"),
                                      "--iterations", "5", "-o", str(tmp_path / "warm.png")])  # fmt: skip
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "with the term" in out and (tmp_path / "warm.png").is_file()
