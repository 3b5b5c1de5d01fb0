"""Every option works in batches: each item gets what it would get alone."""

import numpy as np
from conftest import PLAIN, PLAIN_FLAGS, smooth_image
from PIL import Image

import jaxstyle
from jaxstyle.cli import _Run, main

FAST = dict(PLAIN, size=32, iterations=4, style_weight=1e4, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))
FLAGS = ["--size", "32", "--iterations", "4", "--style-weight", "1e4", "--style-layers", "relu1_1,relu2_1",
         "--content-layers", "relu2_1", "--quiet", *PLAIN_FLAGS]  # fmt: skip


def _gap(a, b) -> int:
    return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


def _files(tmp_path, rng):
    paths = {}
    for name, (h, w) in {"content": (40, 48), "a": (36, 36), "b": (30, 30)}.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(paths[name])
    left = np.zeros((27, 32), np.uint8)
    left[:, :16] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    return paths


def test_blends_per_item(random_params, rng, tmp_path):
    f = _files(tmp_path, rng)
    options = dict(FAST, weights=random_params)
    batched = jaxstyle.stylize_batch(f["content"], [[f["a"], f["b"]], [f["a"], f["b"]]],
                                     style_blend_weights=[[1, 0], [0, 1]], **options)  # fmt: skip
    for image, blend in zip(batched, ([1, 0], [0, 1])):
        assert _gap(image, jaxstyle.stylize(f["content"], [f["a"], f["b"]], style_blend_weights=blend, **options)) <= 1
    assert _gap(batched[0], batched[1]) > 2


def test_masks_scales_and_presets_in_batches(random_weights_file, rng, tmp_path):
    f = _files(tmp_path, rng)
    w = ["--weights", str(random_weights_file)]
    common = ["stylize", str(f["content"]), str(f["a"]), str(f["b"]), "--batch", *w, *FLAGS]
    assert main([*common, "-o", str(tmp_path / "m_{style}.png"), "--masks", str(tmp_path / "left.png"),
                 str(tmp_path / "right.png")]) == 0  # fmt: skip
    for style, mask in (("a", "left"), ("b", "right")):
        alone = jaxstyle.stylize(f["content"], [f[style]], masks=[tmp_path / f"{mask}.png"], weights=random_weights_file, **FAST)
        assert _gap(Image.open(tmp_path / f"m_{style}.png"), alone) <= 1
    assert main([*common, "-o", str(tmp_path / "s_{index}.png"), "--scales", "2", "--preset", "fast", "--size", "40"]) == 0
    for i, style in enumerate("ab"):
        alone = jaxstyle.stylize(f["content"], f[style], preset="fast", scales=2, weights=random_weights_file,
                                 **{**FAST, "size": 40})  # fmt: skip
        assert _gap(Image.open(tmp_path / f"s_{i}.png"), alone) <= 1


def test_a_batch_checkpoints_saves_and_resumes_exactly(random_weights_file, rng, tmp_path, monkeypatch, capsys):
    f = _files(tmp_path, rng)
    base = ["stylize", str(f["content"]), str(f["a"]), str(f["b"]), "--batch", "--weights", str(random_weights_file),
            *FLAGS, "--iterations", "6", "--style-layer-weights", "balanced", "--average-decay", "0.5"]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "whole_{index}.png")]) == 0
    ckpt = tmp_path / "batch.ckpt"
    update = _Run.update

    def interrupt_at_4(self, i, loss, images, converged=()):
        update(self, i, loss, images, converged)
        if i == 4:
            self.interrupt.append(True)

    with monkeypatch.context() as m:
        m.setattr(_Run, "update", interrupt_at_4)
        code = main([*base, "-o", str(tmp_path / "part_{index}.png"), "--checkpoint", str(ckpt), "--checkpoint-every", "2",
                     "--save-every", "2"])  # fmt: skip
    assert code == 130 and "interrupted at iteration 4" in capsys.readouterr().err
    for i in range(2):  # the intermediate saves of every item
        assert (tmp_path / f"part_{i}_0002.png").is_file() and (tmp_path / f"part_{i}_0004.png").is_file()
    assert main([*base, "-o", str(tmp_path / "resumed_{index}.png"), "--resume", str(ckpt), "--checkpoint-every", "2"]) == 0
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"resumed_{i}.png")),
                                      np.asarray(Image.open(tmp_path / f"whole_{i}.png")))  # fmt: skip
