"""Defects found by using jaxstyle as a new user would: each test failed before its fix."""

import hashlib
import http.server
import threading
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle
import jaxstyle.api
from jaxstyle import color
from jaxstyle.cli import _Run, main
from jaxstyle.errors import WeightsError
from jaxstyle.optimize import NonFiniteLossWarning, OptimizerConfig, minimize
from jaxstyle.vgg import CONV_LAYERS, init_vgg19_params
from jaxstyle.weights import cached_weights_path, read_weights_file

FAST = ["--size", "32", "--iterations", "4", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
        "--style-weight", "1e4", "--quiet"]  # fmt: skip


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def _one_line_error(err: str, text: str) -> bool:
    return err.startswith("jaxstyle: error: ") and text in err and "\n" not in err


def _no_work(monkeypatch):
    """Make any optimisation fail the test: a refusal must come before the work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run started before the bad option was refused")

    monkeypatch.setattr(jaxstyle.api, "prepare_batch", refuse)


# 1. A batch output pattern with an unknown field.
def test_a_bad_batch_output_pattern_is_an_option_error(image_files, random_weights_file, tmp_path, capsys, monkeypatch):
    content, style = image_files
    _no_work(monkeypatch)
    for pattern in ("a{x}.png", "a{0}.png", "a{style.x}.png"):
        code = main(["stylize", str(content), str(style), "--batch", "-o", str(tmp_path / pattern),
                     "--weights", str(random_weights_file), *FAST])  # fmt: skip
        err = _err(capsys)
        assert code == 2 and _one_line_error(err, "only {style} and {index}"), err


# 2. An output format Pillow reads but cannot write.
def test_an_output_format_pillow_cannot_write_is_refused_first(image_files, random_weights_file, tmp_path, capsys, monkeypatch):
    content, style = image_files
    _no_work(monkeypatch)
    code = main(["stylize", str(content), str(style), "-o", str(tmp_path / "out.psd"), "--weights", str(random_weights_file), *FAST])
    err = _err(capsys)
    assert code == 5 and _one_line_error(err, "cannot write PSD"), err
    assert not (tmp_path / "out.psd").exists()


# 3. Masks, the weights file, an init image and the checkpoint resumed from are inputs too.
def test_no_input_is_ever_an_output_or_a_checkpoint(image_files, random_weights_file, tmp_path, capsys, monkeypatch):
    content, style = image_files
    mask = tmp_path / "mask.png"
    Image.new("L", (48, 40), 255).save(mask)
    weights_png = tmp_path / "weights.png"  # a weights file with an image's name
    weights_png.write_bytes(random_weights_file.read_bytes())
    init = tmp_path / "init.png"
    Image.open(content).save(init)
    resume = tmp_path / "resume.png"
    resume.write_bytes(b"a checkpoint, as far as the user knows")
    before = {p: p.read_bytes() for p in (mask, weights_png, init, resume)}
    base = ["stylize", str(content), str(style), *FAST]
    w = ["--weights", str(random_weights_file)]
    _no_work(monkeypatch)
    for args, code, text in [
        ([*base, *w, "--masks", str(mask), "-o", str(mask)], 5, "one of the input images"),
        ([*base, "--weights", str(weights_png), "-o", str(weights_png)], 5, "one of the input images"),
        ([*base, *w, "--init", str(init), "-o", str(init)], 5, "one of the input images"),
        ([*base, *w, "--resume", str(resume), "-o", str(resume)], 5, "one of the input images"),
        ([*base, *w, "--masks", str(mask), "-o", str(tmp_path / "o.png"), "--checkpoint", str(mask)], 2, "checkpoint"),
        ([*base, *w, "-o", str(tmp_path / "o.png"), "--checkpoint", str(content)], 2, "checkpoint"),
        ([*base, *w, "-o", str(tmp_path / "o.png"), "--checkpoint", str(tmp_path / "o.png")], 2, "checkpoint"),
        ([*base, *w, "--batch", "--init", str(init), "-o", str(init)], 5, "one of the input images"),
    ]:  # fmt: skip
        got = main(args)
        err = _err(capsys)
        assert got == code and _one_line_error(err, text), (args, err)
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "o.png").exists()


# 4. Coarse to fine with balanced layer weights (the hq preset) resumes, bit for bit.
def _interrupt_at(monkeypatch, iteration, calls):
    """Press Ctrl-C (as the CLI's handler records it) when the finest scale reaches ``iteration``."""
    update = _Run.update

    def update_and_interrupt(self, i, loss, images, converged=()):
        update(self, i, loss, images, converged)
        calls.append(i)
        if i == iteration:
            self.interrupt.append(True)

    monkeypatch.setattr(_Run, "update", update_and_interrupt)


def test_a_multi_scale_run_with_balanced_weights_resumes_exactly(image_files, random_weights_file, tmp_path, capsys, monkeypatch):
    content, style = image_files
    args = ["stylize", str(content), str(style), "--weights", str(random_weights_file), *FAST, "--size", "40",
            "--iterations", "6", "--scales", "2", "--style-layer-weights", "balanced", "--average-decay", "0.5"]  # fmt: skip
    whole, part, resumed, ckpt = (tmp_path / n for n in ("whole.png", "part.png", "resumed.png", "run.ckpt"))
    assert main([*args, "-o", str(whole)]) == 0
    calls = []
    with monkeypatch.context() as m:
        _interrupt_at(m, 4, calls)
        assert main([*args, "-o", str(part), "--checkpoint", str(ckpt), "--checkpoint-every", "2"]) == 130
    assert calls == [2, 4]  # only the finest scale reports to the run (the coarse one has its own bar)
    _err(capsys)
    code = main([*args, "-o", str(resumed), "--resume", str(ckpt), "--checkpoint-every", "2"])
    assert code == 0, _err(capsys)
    np.testing.assert_array_equal(np.asarray(Image.open(resumed)), np.asarray(Image.open(whole)))
    assert np.abs(np.asarray(Image.open(part), int) - np.asarray(Image.open(whole), int)).max() > 0


# 5. Intermediate and Ctrl-C saves go through the same finishing step as the final image.
def _chroma(path_or_image):
    return color.rgb_to_yiq(np.asarray(Image.open(path_or_image) if not isinstance(path_or_image, Image.Image)
                                       else path_or_image, np.float64) / 255.0)[..., 1:]  # fmt: skip


@pytest.mark.parametrize("mode", ["luminance", "swap"])
def test_intermediate_saves_keep_the_contents_colours(image_files, random_weights_file, tmp_path, mode):
    content, style = image_files
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), "--weights", str(random_weights_file), *FAST,
                 "--save-every", "2", "--preserve-color", mode]) == 0  # fmt: skip
    want = _chroma(Image.open(content).convert("RGB").resize((32, 27), Image.Resampling.LANCZOS))
    assert np.abs(want).max() > 0.05  # the content has colour to keep
    for saved in (tmp_path / "out_0002.png", out):
        assert np.abs(_chroma(saved) - want).max() < 0.03, saved  # 8-bit rounding and clipping only


def test_ctrl_c_saves_of_a_batch_keep_the_contents_colours(image_files, random_weights_file, tmp_path, rng, monkeypatch, capsys):
    content, style = image_files
    other = tmp_path / "other.png"
    Image.fromarray((smooth_image(rng, 30, 30) * 255).astype(np.uint8)).save(other)
    _interrupt_at(monkeypatch, 10, [])  # a batch reports every 10 iterations
    code = main(["stylize", str(content), str(style), str(other), "--batch", "-o", str(tmp_path / "out_{index}.png"),
                 "--weights", str(random_weights_file), *FAST, "--iterations", "20", "--preserve-color", "luminance"])  # fmt: skip
    assert code == 130 and "interrupted at iteration 10" in _err(capsys)
    want = _chroma(Image.open(content).convert("RGB").resize((32, 27), Image.Resampling.LANCZOS))
    for i in range(2):
        assert np.abs(_chroma(tmp_path / f"out_{i}.png") - want).max() < 0.03


# 6. A damaged cached weights file: the advice given works.
def _keras_file(path):
    """Random He-scaled VGG-19 weights laid out as Keras' HDF5 file."""
    import h5py
    import jax

    params = init_vgg19_params(jax.random.key(1), CONV_LAYERS)
    with h5py.File(path, "w") as f:
        for name in CONV_LAYERS:
            group = f"block{name[4]}_conv{name[6]}"
            g = f.create_group(group)
            g.create_dataset(f"{group}_W_1:0", data=np.asarray(params[name]["kernel"]))
            g.create_dataset(f"{group}_b_1:0", data=np.asarray(params[name]["bias"]))
    return path


def test_a_damaged_cache_is_replaced_by_weights_fetch(image_files, tmp_path, rng, capsys, monkeypatch):
    import jaxstyle.fetch as fetch

    monkeypatch.setenv("JAXSTYLE_CACHE_DIR", str(tmp_path / "cache"))
    h5 = _keras_file(tmp_path / "keras.h5")
    source = fetch.LocalFile(h5, hashlib.md5(h5.read_bytes()).hexdigest())
    monkeypatch.setattr(fetch, "default_sources", lambda: (source,))
    cached = cached_weights_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x85\xa4oops")  # a damaged cache
    content, style = image_files
    run = ["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *FAST, "--iterations", "1"]
    assert main(run) == 4
    err = _err(capsys)
    assert _one_line_error(err, "jaxstyle weights fetch"), err
    assert main(["weights", "fetch"]) == 0  # the command the message names
    assert "damaged" in _err(capsys)
    assert read_weights_file(cached)["source"]["md5"] == source.md5
    assert main(run) == 0
    # Without --force a sound cache stays; with it, it is fetched again.
    capsys.readouterr()
    assert main(["weights", "fetch"]) == 0 and "already cached" in capsys.readouterr().out
    cached.write_bytes(cached.read_bytes())  # same bytes, new modification time
    stamp = cached.stat().st_mtime_ns
    assert main(["weights", "fetch", "--force"]) == 0
    assert "getting VGG-19 weights" in _err(capsys) and cached.stat().st_mtime_ns != stamp


# 7. The NaN stop returns the averaged image up to the last finite iterate.
def _breaks_past(x, target, limit):
    return jnp.where(x[0, 0, 0] > limit, jnp.nan, jnp.sum((x - target) ** 2))


def test_the_nan_stop_keeps_the_average(rng):
    x0, target = jnp.full((8, 8, 3), 0.5, jnp.float32), jnp.ones((8, 8, 3), jnp.float32)
    config = OptimizerConfig("adam", learning_rate=0.02, average_decay=0.5)
    with pytest.warns(NonFiniteLossWarning):
        image, history = minimize(_breaks_past, (target, 0.8), x0, 60, config, chunk_size=7)
    finite = len(history)  # x_0 … x_{finite−1} had finite losses
    assert 10 < finite < 60
    plain = config._replace(average_decay=0.0)
    iterates = [np.asarray(minimize(_breaks_past, (target, 0.8), x0, k, plain)[0], np.float64) for k in range(1, finite)]
    total, weight = np.zeros_like(iterates[0]), 0.0
    for x in iterates:
        total, weight = 0.5 * total + 0.5 * x, 0.5 * weight + 0.5
    np.testing.assert_allclose(np.asarray(image), total / weight, atol=1e-6)
    assert np.abs(total / weight - iterates[-1]).max() > 1e-3  # not the bare last iterate


# 8. Only jaxstyle's own warnings get its prefix.
def test_foreign_warnings_pass_through_unprefixed(image_files, random_weights_file, tmp_path, capsys, monkeypatch):
    solve = jaxstyle.api.solve

    def noisy_solve(*args, **kwargs):
        warnings.warn("something from another library", UserWarning)
        return solve(*args, **kwargs)

    monkeypatch.setattr(jaxstyle.api, "solve", noisy_solve)
    content, style = image_files
    with pytest.warns(UserWarning, match="something from another library"):  # passed on as it came
        assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--weights",
                     str(random_weights_file), *FAST]) == 0  # fmt: skip
    assert "jaxstyle: warning" not in _err(capsys)


# 9. Every download failure is one weights error, with nothing left in the cache.
class _CutShort(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # promises a megabyte, sends ten bytes, hangs up
        if self.path == "/garbage":  # no HTTP at all
            self.wfile.write(b"SPAM SPAM SPAM\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_download_errors_are_weights_errors(tmp_path):
    from jaxstyle.fetch import Url, fetch_weights

    server = http.server.HTTPServer(("127.0.0.1", 0), _CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    try:
        for url, text in [
            (f"http://127.0.0.1:{server.server_port}/vgg19.h5", "IncompleteRead"),
            (f"http://127.0.0.1:{server.server_port}/garbage", "BadStatusLine"),
            ("not-an-address", "download failed"),
            (truncated.as_uri(), "md5"),
            ((tmp_path / "absent.h5").as_uri(), "download failed"),
        ]:  # fmt: skip
            destination = tmp_path / "cache" / "w.msgpack"
            with pytest.raises(WeightsError) as e:
                fetch_weights(destination, [Url(url, timeout_s=10)], lambda m: None)
            assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
            assert not destination.parent.exists() or not list(destination.parent.iterdir())
    finally:
        server.shutdown()
        server.server_close()
