"""Fuzzing: whatever bytes or option values arrive, jaxstyle answers with a result or a
JaxstyleError, never another exception.

CI runs the "ci" hypothesis profile (40 repeatable cases a test); the long run is
``python3 -m pytest tests/test_fuzz.py --hypothesis-profile=long`` (1,000 each).
"""

import functools
import io

import jax
import numpy as np
from conftest import LOSS_CONVS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import jaxstyle
from jaxstyle import ImageError, JaxstyleError
from jaxstyle.images import load_image, to_array
from jaxstyle.vgg import LAYERS, init_vgg19_params


def _sample_files():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), np.uint8)
    files = {}
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"),
                      ("WEBP", "RGB"), ("PNG", "RGBA"), ("TIFF", "CMYK")]:  # fmt: skip
        buf = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buf, fmt)
        files[f"{fmt}-{mode}"] = buf.getvalue()
    return files


SAMPLES = _sample_files()


@st.composite
def damaged_image_bytes(draw):
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _check_loads_or_refuses(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "image"
    path.write_bytes(data)
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 2_000_000  # a damaged header may claim a huge size: keep the test quick
    try:
        array = to_array(load_image(path, "content image"), (8, 8))
    except ImageError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    finally:
        Image.MAX_IMAGE_PIXELS = before
    assert array.shape == (8, 8, 3) and array.dtype == np.float32
    assert np.all(np.isfinite(array)) and array.min() >= 0 and array.max() <= 1


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged_image_bytes())
def test_damaged_image_files_load_or_give_image_error(data, tmp_path_factory):
    _check_loads_or_refuses(data, tmp_path_factory)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_load_or_give_image_error(data, tmp_path_factory):
    _check_loads_or_refuses(data, tmp_path_factory)


LAYER_NAMES = st.sampled_from(list(LAYERS) + ["relu6_1", "conv0_0", "", "RELU1_1", "fc7"])
ANYTHING = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.floats(), st.integers(-10, 10))
WEIGHT = st.one_of(st.floats(), st.integers(-3, 3), st.text(max_size=4), st.none())

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "size": st.one_of(st.integers(-4, 72), ANYTHING),
        "iterations": st.one_of(st.integers(-3, 3), ANYTHING),
        "optimizer": st.one_of(st.sampled_from(["lbfgs", "adam", "sgd", "LBFGS"]), ANYTHING),
        "learning_rate": WEIGHT,
        "content_weight": WEIGHT,
        "style_weight": st.one_of(WEIGHT, st.just("auto")),
        "tv_weight": WEIGHT,
        "content_layers": st.lists(LAYER_NAMES, max_size=2),
        "style_layers": st.lists(LAYER_NAMES, max_size=4),
        "style_layer_weights": st.one_of(st.none(), st.lists(WEIGHT, max_size=4),
                                         st.dictionaries(LAYER_NAMES, WEIGHT, max_size=3)),  # fmt: skip
        "pooling": st.one_of(st.sampled_from(["max", "avg", "median"]), ANYTHING),
        "init": st.one_of(st.sampled_from(["content", "noise", "style", "sketch"]), ANYTHING),
        "seed": st.one_of(st.integers(0, 2**31), ANYTHING),
    },
)


@functools.cache
def _random_params():
    return jax.tree.map(np.asarray, init_vgg19_params(jax.random.key(0), LOSS_CONVS))


@given(options=OPTIONS)
def test_any_options_give_a_problem_or_a_jaxstyle_error(options):
    rng = np.random.default_rng(0)
    content, style = rng.random((40, 48, 3), np.float32), rng.random((36, 36, 3), np.float32)
    try:
        problem = jaxstyle.prepare(content, style, weights=_random_params(), **options)
    except JaxstyleError as e:
        assert str(e) and "\n" not in str(e)
        return
    image = np.asarray(problem.init_image)
    assert image.ndim == 3 and image.shape[2] == 3 and max(image.shape[:2]) == options.get("size", 512)
    assert np.all(np.isfinite(image)) and image.min() >= 0 and image.max() <= 1
    terms = problem.item(0).terms
    for leaf in (terms["content"].weight, terms["style"].weight, terms["tv"].weight):
        assert np.isfinite(float(leaf)) and float(leaf) >= 0


# -- the command line: any flags, through the parser ------------------------------------

NUMBER_TEXT = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 5).map(str),
                        st.sampled_from(["", "auto", "1e400", "0x10", "nan", "-0", "1,2"]), st.text(max_size=4))  # fmt: skip
LAYER_TEXT = st.lists(LAYER_NAMES, max_size=3).map(",".join)
FLAG_VALUES = {
    "--size": st.one_of(st.integers(-4, 72).map(str), NUMBER_TEXT),
    "--iterations": st.one_of(st.integers(-2, 3).map(str), NUMBER_TEXT),
    "--optimizer": st.sampled_from(["lbfgs", "adam", "sgd", ""]),
    "--linesearch": st.sampled_from(["zoom", "backtracking", "wolfe"]),
    "--learning-rate": NUMBER_TEXT,
    "--content-weight": NUMBER_TEXT,
    "--style-weight": NUMBER_TEXT,
    "--tv-weight": NUMBER_TEXT,
    "--content-layers": LAYER_TEXT,
    "--style-layers": LAYER_TEXT,
    "--style-layer-weights": st.one_of(st.just("balanced"), st.lists(NUMBER_TEXT, max_size=3).map(",".join)),
    "--style-blend-weights": st.lists(NUMBER_TEXT, max_size=3).map(",".join),
    "--pooling": st.sampled_from(["max", "avg", "median"]),
    "--preserve-color": st.sampled_from(["luminance", "histogram", "swap", "grey"]),
    "--style-scale": NUMBER_TEXT,
    "--init": st.sampled_from(["content", "noise", "style", "sketch", "missing.png"]),
    "--seed": NUMBER_TEXT,
    "--save-every": st.integers(-2, 3).map(str),
    "--checkpoint-every": st.integers(-1, 3).map(str),
    "--average-decay": NUMBER_TEXT,
    "--scales": st.integers(-1, 2).map(str),
    "--style-loss": st.sampled_from(["gram", "sliced_wasserstein", "wasserstein"]),
    "--compute-dtype": st.sampled_from(["float32", "bfloat16", "float16"]),
    "--preset": st.sampled_from(["paper", "fast", "hq", "best"]),
    "--remat": st.none(),
    "--batch": st.none(),
    "--quiet": st.none(),
}


@st.composite
def command_lines(draw):
    flags = draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=6, unique=True))
    argv = []
    for flag in flags:
        value = draw(FLAG_VALUES[flag])
        argv += [flag] if value is None else [f"{flag}={value}"]  # "=": values may start with "-"
    return argv


@functools.cache
def _cli_files(directory):
    from pathlib import Path

    from jaxstyle.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights import save_weights

    rng = np.random.default_rng(0)
    d = Path(directory)
    for name, shape in (("content.png", (40, 48, 3)), ("style.png", (36, 36, 3))):
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(d / name)
    convs = {k: v for k, v in _random_params().items() if k != "input"}
    save_weights(d / "w.msgpack", convs, CAFFE_PREPROCESSING, {"kind": "random"})
    return d


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_any_command_line_gives_an_image_or_one_error_line(argv, tmp_path_factory, capsys):
    from unittest import mock

    import jaxstyle.api
    from jaxstyle.cli import main
    from jaxstyle.images import to_pil

    base = tmp_path_factory.getbasetemp() / "cli-fuzz"
    base.mkdir(exist_ok=True)
    d = _cli_files(str(base))
    out = d / "out.png"
    out.unlink(missing_ok=True)
    # Parsing, checking and preparing run for real; the optimisation is replaced by its start.
    quick_solve = lambda problem, **kw: [to_pil(image) for image in problem.init_images]  # noqa: E731
    full = ["stylize", str(d / "content.png"), str(d / "style.png"), "-o", str(out), "--weights", str(d / "w.msgpack"), *argv]
    with mock.patch.object(jaxstyle.api, "solve", quick_solve):
        try:
            code = main(full)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("jaxstyle: error:")]
    if code == 0:
        assert out.is_file() and not errors, err
    else:
        assert code in (2, 3, 4, 5, 6) and len(errors) == 1 and "Traceback" not in err, (full, code, err)
