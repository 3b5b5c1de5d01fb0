import os
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

from jaxstyle.vgg import CONV_LAYERS, init_vgg19_params  # noqa: E402
from jaxstyle.weights import WeightsError, cache_dir, locate_weights  # noqa: E402

# The real weights are looked up where a user keeps them (JAXSTYLE_WEIGHTS, the cache)
# before the tests start; then the cache is moved to a temporary directory, so that no
# test writes into the user's real cache (fetches, compiled programs).
try:
    REAL_WEIGHTS: Path | None = locate_weights(fetch=False)
    REAL_WEIGHTS_ERROR = ""
except WeightsError as e:
    REAL_WEIGHTS, REAL_WEIGHTS_ERROR = None, str(e)
REAL_CACHE_DIR = cache_dir()
_TEST_CACHE = tempfile.TemporaryDirectory(prefix="jaxstyle-test-cache-")
os.environ["JAXSTYLE_CACHE_DIR"] = _TEST_CACHE.name
os.environ.pop("JAXSTYLE_WEIGHTS", None)

#: The defaults' TV weight (γ = 1e6) and early stop (tolerance 2e-3) were chosen on the real
#: weights at real sizes (benchmarks/defaults.py). On the tests' random weights at 32 px the
#: TV term outweighs the others, and runs of a few iterations stop at their first chunk: tests
#: of other things turn both off, with α = 1 as before (test_tolerance.py and the TV tests test them
#: themselves).
PLAIN = dict(tv_weight=0.0, tolerance=0.0, content_weight=1.0)
PLAIN_FLAGS = ["--tv-weight", "0", "--tolerance", "0", "--content-weight", "1"]

#: Set in CI: a skipped test fails instead (every test must really run there).
STRICT = os.environ.get("JAXSTYLE_REQUIRE_REAL_WEIGHTS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run (JAXSTYLE_REQUIRE_REAL_WEIGHTS=1): {reason}"

# Fuzzing: a modest, repeatable count in CI; `--hypothesis-profile=long` for the long run.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile("ci")

# Convolutions up to conv5_1: all the default losses need.
LOSS_CONVS = CONV_LAYERS[: CONV_LAYERS.index("conv5_1") + 1]


@pytest.fixture(scope="session")
def random_params():
    """Random VGG-19 params (conv1_1..conv5_1) as numpy arrays, Caffe preprocessing."""
    params = init_vgg19_params(jax.random.key(0), LOSS_CONVS)
    return jax.tree.map(np.asarray, params)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def smooth_image(rng, h, w):
    """A smooth random RGB image in [0, 1] (a few blurred blobs: image-like, not noise)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for _ in range(6):
        cy, cx, r = rng.random(3) * [1, 1, 0.4] + [0, 0, 0.1]
        img += rng.random(3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None]
    img += 0.05 * rng.standard_normal((h, w, 3))
    return np.clip(img / img.max(), 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def real_weights_path():
    """The real converted VGG-19 weights, or skip (fail when JAXSTYLE_REQUIRE_REAL_WEIGHTS=1)."""
    if REAL_WEIGHTS is None:
        pytest.skip(f"real VGG-19 weights not available ({REAL_WEIGHTS_ERROR}); run 'jaxstyle weights fetch'")
    return REAL_WEIGHTS


@pytest.fixture(scope="session")
def real_keras_file():
    """The original Keras file that 'jaxstyle weights fetch' keeps in the user's cache, or skip."""
    from jaxstyle.fetch import KERAS_FILENAME

    path = REAL_CACHE_DIR / KERAS_FILENAME
    if not path.is_file():
        pytest.skip("the original Keras file is not kept in the cache (weights given by path)")
    return path


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory, random_params):
    """The random params saved as a jaxstyle weights file (what the CLI and API load)."""
    from jaxstyle.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights import save_weights

    path = tmp_path_factory.mktemp("weights") / "random-vgg19.msgpack"
    convs = {k: v for k, v in random_params.items() if k != "input"}
    return save_weights(path, convs, CAFFE_PREPROCESSING, {"kind": "random", "seed": "0"})


@pytest.fixture
def image_files(tmp_path, rng):
    """A 48x40 content PNG and a 36x36 style PNG."""
    from PIL import Image

    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray((smooth_image(rng, 40, 48) * 255).astype(np.uint8)).save(content)
    Image.fromarray((smooth_image(rng, 36, 36) * 255).astype(np.uint8)).save(style)
    return content, style
