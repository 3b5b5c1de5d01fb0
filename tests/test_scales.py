"""Coarse to fine: each scale starts from the previous one's result, upsampled."""

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle
from jaxstyle import OptionError
from jaxstyle.api import scale_sizes
from jaxstyle.cli import main

FAST = dict(iterations=4, style_weight=1e4, style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu3_1",))


def test_scale_sizes_are_root_two_apart_and_end_at_the_size():
    assert scale_sizes(512, 3) == [256, 362, 512]
    assert scale_sizes(64, 1) == [64]


def test_zero_iterations_upsample_the_coarse_image(random_params, rng):
    # With nothing to optimise, the result is the content taken down to the coarse size and
    # back up: the plumbing of coarse to fine, checked against PIL directly.
    content = (smooth_image(rng, 48, 64) * 255).astype(np.uint8)
    out = jaxstyle.stylize(content, content, weights=random_params, scales=2, size=64, **{**FAST, "iterations": 0})
    coarse = Image.fromarray(content).resize((45, 34), Image.Resampling.LANCZOS)  # size 45 = 64/√2
    want = coarse.resize((64, 48), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(out, int) - np.asarray(want, int)).max() <= 1


def test_each_scale_starts_from_the_previous_result(random_params, rng):
    content, style = smooth_image(rng, 48, 64), smooth_image(rng, 40, 40)
    options = dict(FAST, weights=random_params)
    both = jaxstyle.stylize(content, style, scales=2, size=64, **options)
    first = jaxstyle.stylize(content, style, size=45, **options)
    by_hand = jaxstyle.stylize(content, style, size=64, init=first, **options)
    np.testing.assert_array_equal(np.asarray(both), np.asarray(by_hand))
    single = jaxstyle.stylize(content, style, size=64, **options)
    assert np.abs(np.asarray(both, int) - np.asarray(single, int)).mean() > 0.5
    with pytest.raises(OptionError, match="scales"):
        jaxstyle.stylize(content, style, scales=0, size=64, **options)


def test_cli_scales(random_weights_file, image_files, tmp_path):
    content, style = image_files
    out = tmp_path / "o.png"
    args = ["stylize", str(content), str(style), "-o", str(out), "--weights", str(random_weights_file), "--size", "40",
            "--scales", "2", "--iterations", "3", "--style-weight", "1e4", "--quiet",
            "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layers", "relu3_1"]  # fmt: skip
    assert main(args) == 0
    by_api = jaxstyle.stylize(content, style, weights=str(random_weights_file), scales=2, size=40,
                              **{**FAST, "iterations": 3})  # fmt: skip
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(by_api))


def test_presets_set_options_and_explicit_ones_win(random_params, rng, monkeypatch):
    import jaxstyle.api as api

    class Seen(Exception):
        pass

    seen = []

    def record(content, style, options, shape=None):
        seen.append(options.as_dict())
        raise Seen

    monkeypatch.setattr(api, "_prepare_item", record)
    content = smooth_image(rng, 48, 64)
    for preset, explicit, want in [
        ("paper", {}, {"init": "noise", "pooling": "avg", "optimizer": "lbfgs", "iterations": 500}),
        ("fast", {"iterations": 7}, {"optimizer": "adam", "iterations": 7}),
        ("hq", {"size": 64}, {"size": 32, "optimizer": "lbfgs", "style_layer_weights": "balanced",
                              "average_decay": 0.9}),  # the first of three: 32, 45, 64
    ]:  # fmt: skip
        with pytest.raises(Seen):
            jaxstyle.stylize(content, content, preset=preset, weights=random_params, **explicit)
        assert want.items() <= seen[-1].items(), (preset, seen[-1])
    with pytest.raises(OptionError, match="unknown preset 'best'"):
        jaxstyle.stylize(content, content, preset="best", weights=random_params)


def test_cli_presets_yield_to_explicit_flags(monkeypatch, image_files, random_weights_file, tmp_path):
    import jaxstyle.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_stylize", lambda args: seen.append(args) or 0)
    content, style = image_files
    base = ["stylize", str(content), str(style), "-o", str(tmp_path / "o.png")]
    assert main([*base, "--preset", "fast", "--iterations", "9"]) == 0
    assert seen[-1].optimizer == "adam" and seen[-1].iterations == 9 and seen[-1].learning_rate == 0.02
    assert main([*base, "--preset", "hq"]) == 0
    assert seen[-1].scales == 3 and seen[-1].iterations == 150
    assert seen[-1].style_layer_weights == "balanced" and seen[-1].average_decay == 0.9
