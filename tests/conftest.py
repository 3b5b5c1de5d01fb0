import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

from jaxstyle.vgg import CONV_LAYERS, init_vgg19_params  # noqa: E402
from jaxstyle.weights import WeightsError, locate_weights  # noqa: E402

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
    try:
        return locate_weights(fetch=False)
    except WeightsError as e:
        if os.environ.get("JAXSTYLE_REQUIRE_REAL_WEIGHTS") == "1":
            pytest.fail(f"real weights required but not found: {e}")
        pytest.skip(f"real VGG-19 weights not available ({e}); run 'jaxstyle weights fetch'")


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
