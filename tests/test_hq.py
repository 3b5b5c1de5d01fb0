"""Averaged iterates and balanced layer weights (the hq preset's parts), against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle import OptionError, vgg19_features
from jaxstyle.optimize import OptimizerConfig, minimize
from jaxstyle.objective import LossLayers, StyleObjective, make_terms
from jaxstyle.optimize import init_state

LAYERS = LossLayers(content=("relu2_1",), style=("relu1_1", "relu2_1", "relu3_1"))


def _problem(random_params, rng):
    content, style = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    targets = make_terms(random_params, content, style, LAYERS, content_weight=1.0, style_weight=1e3, tv_weight=0.0)
    return StyleObjective(LAYERS), (random_params, targets), jnp.asarray(content)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_the_result_is_the_bias_corrected_moving_average_of_the_iterates(random_params, rng, optimizer):
    objective, args, x0 = _problem(random_params, rng)
    plain = OptimizerConfig(optimizer)
    # x_k: the last iterate after k steps (decay 0 returns exactly that).
    iterates = [np.asarray(minimize(objective, args, x0, k, plain, chunk_size=3)[0], np.float64) for k in range(1, 8)]
    decay = 0.7
    total, weight = np.zeros_like(iterates[0]), 0.0
    for x in iterates:
        total, weight = decay * total + (1 - decay) * x, decay * weight + (1 - decay)
    averaged, _ = minimize(objective, args, x0, 7, plain._replace(average_decay=decay), chunk_size=3)
    np.testing.assert_allclose(np.asarray(averaged), total / weight, atol=2e-6)
    assert np.abs(total / weight - iterates[-1]).max() > 1e-4  # averaging did change the image


def test_an_averaged_run_resumes_exactly(random_params, rng):
    objective, args, x0 = _problem(random_params, rng)
    config = OptimizerConfig("adam", average_decay=0.5)
    whole, _ = minimize(objective, args, x0, 6, config, chunk_size=3)
    saved = []
    minimize(objective, args, x0, 3, config, chunk_size=3, callback=lambda p: saved.append(p.state))
    template = init_state(x0, config)
    state = type(template)(*[np.asarray(a) if not isinstance(a, tuple) else a for a in saved[-1]])
    resumed, _ = minimize(objective, args, x0 * 0, 6, config, chunk_size=3, resume=(state, 3))
    np.testing.assert_array_equal(np.asarray(resumed), np.asarray(whole))


def test_average_decay_is_checked(random_weights_file, rng):
    c = smooth_image(rng, 32, 32)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(OptionError, match="average decay"):
            jaxstyle.prepare(c, c, size=32, average_decay=bad, weights=random_weights_file)


def test_balanced_layer_weights_make_every_layer_count_alike_at_the_start(random_weights_file, rng):
    content, style = smooth_image(rng, 40, 40), smooth_image(rng, 40, 40)
    common = dict(size=40, style_layers=LAYERS.style, content_layers=LAYERS.content, weights=random_weights_file)
    problem = jaxstyle.prepare(content, style, style_layer_weights="balanced", **common).item()
    plain = jaxstyle.prepare(content, style, **common).item()
    # E_l at the initial image, in numpy from the features and the style Grams.
    feats = vgg19_features(problem.params, problem.init_image[None], LAYERS.style)
    energies = {}
    for name in LAYERS.style:
        f = np.asarray(feats[name][0], np.float64)
        h, w, c = f.shape
        g = f.reshape(-1, c).T @ f.reshape(-1, c)
        energies[name] = ((g - np.asarray(plain.terms['style'].term.grams[name], np.float64)) ** 2).sum() / (4 * c**2 * (h * w) ** 2)
    weights = {k: float(v) for k, v in problem.terms['style'].term.layer_weights.items()}
    contributions = [weights[k] * energies[k] for k in LAYERS.style]
    np.testing.assert_allclose(contributions, contributions[0], rtol=1e-4)  # alike
    assert sum(contributions) == pytest.approx(np.mean(list(energies.values())), rel=1e-4)  # β keeps its meaning
    assert max(weights.values()) / min(weights.values()) > 1.5  # the layers did differ
    # Its automatic β is its own (chosen by eye): 2e2 · H·W / 512².
    assert float(problem.terms['style'].weight) == pytest.approx(2e2 * 40 * 40 / 512**2, rel=1e-6)
    with pytest.raises(OptionError, match="'balanced'"):
        jaxstyle.prepare(content, style, style_layer_weights="equal", **common)


def test_command_line_takes_balanced_weights_and_averaging(random_weights_file, image_files, tmp_path):
    from jaxstyle.cli import main

    content, style = image_files
    fast = ["--size", "32", "--iterations", "3", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
            "--quiet", "--weights", str(random_weights_file), "-o", str(tmp_path / "o.png")]  # fmt: skip
    assert main(["stylize", str(content), str(style), "--style-layer-weights", "balanced", "--average-decay", "0.5", *fast]) == 0
    assert main(["stylize", str(content), str(style), "--average-decay", "1", *fast]) == 2
