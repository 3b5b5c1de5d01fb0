"""Checkpoints, resuming, and Ctrl-C: a long run is never lost."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from jaxstyle.cli import main

FAST = ["--size", "32", "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layers", "relu3_1",
        "--style-weight", "1e4", "--quiet"]  # fmt: skip


def _stylize(image_files, weights, out, *extra):
    content, style = image_files
    return main(["stylize", str(content), str(style), "-o", str(out), "--weights", str(weights), *FAST, *extra])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(random_weights_file, image_files, tmp_path, capsys):
    for optimizer in ("lbfgs", "adam"):
        opt = ["--optimizer", optimizer]
        whole, part, resumed = (tmp_path / f"{n}_{optimizer}.png" for n in ("whole", "part", "resumed"))
        ckpt = tmp_path / f"run_{optimizer}.ckpt"
        assert _stylize(image_files, random_weights_file, whole, "--iterations", "12", *opt) == 0
        assert _stylize(image_files, random_weights_file, part, "--iterations", "5", *opt,
                        "--checkpoint", str(ckpt), "--checkpoint-every", "5") == 0  # fmt: skip
        first = ckpt.read_bytes()
        # A noise init would give another image: the state comes from the checkpoint alone.
        assert _stylize(image_files, random_weights_file, resumed, "--iterations", "12", *opt, "--resume", str(ckpt),
                        "--init", "noise", "--seed", "3") == 0  # fmt: skip
        a, b = np.asarray(Image.open(whole)), np.asarray(Image.open(resumed))
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(int) - np.asarray(Image.open(part), int)).mean() > 0.5  # it did go on
        assert ckpt.read_bytes() != first  # and kept checkpointing to the same file
    assert not list(tmp_path.glob(".*part*"))


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(random_weights_file, image_files, tmp_path, capsys):
    ckpt = tmp_path / "run.ckpt"
    assert _stylize(image_files, random_weights_file, tmp_path / "a.png", "--iterations", "2", "--checkpoint", str(ckpt)) == 0
    capsys.readouterr()
    cases = [
        (["--style-weight", "5e3"], "belongs to another run"),
        (["--optimizer", "adam"], "belongs to another run"),
    ]
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(ckpt.read_bytes()[:-40])
    not_one = tmp_path / "notes.ckpt"
    not_one.write_text("hello")
    for extra, message in cases:
        code = _stylize(image_files, random_weights_file, tmp_path / "b.png", "--iterations", "4", "--resume", str(ckpt), *extra)
        err = capsys.readouterr().err.strip()
        assert code == 6 and err.startswith("jaxstyle: error: checkpoint") and message in err, err
    for path in (damaged, not_one, tmp_path / "missing.ckpt"):
        code = _stylize(image_files, random_weights_file, tmp_path / "b.png", "--iterations", "4", "--resume", str(path))
        err = capsys.readouterr().err.strip()
        assert code == 6 and str(path) in err and "\n" not in err, err
    assert not (tmp_path / "b.png").exists()


def test_ctrl_c_saves_the_last_image_and_exits_130(random_weights_file, image_files, tmp_path):
    content, style = image_files
    out, ckpt = tmp_path / "out.png", tmp_path / "run.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(out), "--weights",
         str(random_weights_file), *FAST, "--iterations", "1000000", "--checkpoint", str(ckpt),
         "--checkpoint-every", "10"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint appeared"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never leave a run behind, whatever happened
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxstyle: interrupted at iteration "), err
    assert f"and checkpoint {ckpt}; continue with --resume {ckpt}" in lines[0]
    # The checkpoint was written at the interrupt, not only every 10 iterations.
    stopped_at = int(lines[0].split("interrupted at iteration ")[1].split(";")[0])
    from flax import serialization

    assert serialization.msgpack_restore(ckpt.read_bytes())["iteration"] == stopped_at
    image = Image.open(out)
    assert image.size == (32, 27) and image.mode == "RGB"
    before = np.asarray(Image.open(content).convert("RGB").resize(image.size, Image.Resampling.LANCZOS), int)
    assert np.abs(np.asarray(image, int) - before).mean() > 0.5  # the painted image, not the input
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part.png") or ".part" in p]
