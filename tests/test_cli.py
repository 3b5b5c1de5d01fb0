import subprocess
import sys

from PIL import Image

from jaxstyle.cli import main

FAST = ["--size", "32", "--iterations", "4", "--style-layers", "relu1_1,relu2_1,relu3_1",
        "--content-layers", "relu3_1", "--quiet"]  # fmt: skip


def test_stylize_end_to_end(random_weights_file, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "result.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--weights", str(random_weights_file),
                 "--save-every", "2", *FAST])  # fmt: skip
    assert code == 0
    image = Image.open(out)
    assert image.size == (32, 27) and image.mode == "RGB"
    assert (tmp_path / "result_0002.png").is_file()  # the intermediate save
    assert not (tmp_path / "result_0004.png").exists()  # the last one is the output itself
    assert not list(tmp_path.glob(".*part*"))  # no temporary files left behind
    assert "saved" in capsys.readouterr().err


def _run(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_errors_are_one_line_with_distinct_exit_codes(random_weights_file, image_files, tmp_path, capsys):
    content, style = image_files
    w = ["--weights", str(random_weights_file)]
    before = content.read_bytes()
    cases = [
        (["stylize", str(tmp_path / "nope.jpg"), str(style), "-o", str(tmp_path / "o.png"), *w, *FAST], 3, "does not exist"),
        (["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *w, *FAST, "--style-layers", "relu9_1"], 2, "relu9_1"),
        (["stylize", str(content), str(style), "-o", str(content), *w, *FAST], 5, "one of the input images"),
        (["stylize", str(content), str(style), "-o", str(tmp_path / "o.xyz"), *w, *FAST], 5, "image format"),
        (["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "w"), *FAST], 4, "not a file"),
        (["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *w, *FAST, "--size", "0"], 2, "size"),
    ]  # fmt: skip
    for args, want_code, want_text in cases:
        code, err = _run(args, capsys)
        assert code == want_code, (args, err)
        assert err.startswith("jaxstyle: error:") and want_text in err and "\n" not in err, err
    assert content.read_bytes() == before  # the input was never overwritten
    assert not (tmp_path / "o.png").exists()


def test_weights_info(random_weights_file, capsys):
    assert main(["weights", "info", str(random_weights_file)]) == 0
    out = capsys.readouterr().out
    assert "conv1_1" in out and "conv5_1" in out and "BGR" in out and "103.939" in out


def test_console_entry_point_reports_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "jaxstyle", "stylize", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
         "-o", str(tmp_path / "c.png"), "--weights", str(tmp_path / "w.msgpack")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [f"jaxstyle: error: content image {tmp_path / 'a.png'} does not exist"]


def test_prints_the_weights_it_uses(random_weights_file, image_files, tmp_path, capsys):
    content, style = image_files
    args = ["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--weights", str(random_weights_file),
            *[a for a in FAST if a != "--quiet"], "--iterations", "1"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    # 48×40 at size 32 is 32×27; auto β = 1000 · 32 · 27 / 512².
    assert "32×27 px" in err and f"β={1000 * 32 * 27 / 512**2:.4g} (auto)" in err, err


def test_usage_mistakes_are_one_line_too(capsys):
    import pytest

    for args, text in [(["stylize", "a.png", "b.png", "-o", "c.png", "--size", "abc"], "invalid int value: 'abc'"),
                       (["stylize", "a.png", "b.png"], "-o/--output"), (["paint"], "invalid choice: 'paint'"),
                       (["stylize", "a.png", "b.png", "-o", "c.png", "--style-weight", "lots"], "a number or 'auto'")]:  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main(args)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and err.startswith("jaxstyle: error: ") and text in err and "\n" not in err, err
