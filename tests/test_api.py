import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle
from jaxstyle import ImageError, OptionError

# β fixed rather than "auto": the random-weight VGG has its own scale.
FAST = dict(size=32, iterations=3, style_weight=1e4, style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu3_1",))


def test_stylize_accepts_paths_pil_images_and_arrays(random_weights_file, image_files, rng):
    content, style = image_files
    out = jaxstyle.stylize(content, style, weights=random_weights_file, **FAST)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert out.size == (32, 27)  # 48x40 scaled to a longer side of 32, aspect kept
    from_pil = jaxstyle.stylize(Image.open(content), Image.open(style), weights=random_weights_file, **FAST)
    from_arrays = jaxstyle.stylize(
        np.asarray(Image.open(content)), np.asarray(Image.open(style), np.float32) / 255.0,
        weights=random_weights_file, **FAST,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(out), np.asarray(from_pil))
    assert np.abs(np.asarray(out, float) - np.asarray(from_arrays, float)).max() <= 1


def test_stylize_changes_the_image_towards_the_style(random_weights_file, image_files):
    content, style = image_files
    out = jaxstyle.stylize(content, style, weights=random_weights_file, **{**FAST, "iterations": 10})
    start = np.asarray(Image.open(content).resize(out.size, Image.Resampling.LANCZOS), float)
    assert np.abs(np.asarray(out, float) - start).mean() > 1.0


def test_noise_init_is_seeded(random_weights_file, image_files):
    content, style = image_files
    run = lambda seed: np.asarray(jaxstyle.stylize(content, style, weights=random_weights_file, init="noise", seed=seed, **FAST))  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_callback_gets_progress(random_weights_file, image_files):
    content, style = image_files
    seen = []
    jaxstyle.stylize(content, style, weights=random_weights_file, callback=seen.append, chunk_size=2, **FAST)
    assert [p.iteration for p in seen] == [2, 3]
    assert seen[-1].image.shape == (27, 32, 3) and np.isfinite(seen[-1].loss)


def test_auto_style_weight_grows_with_the_pixel_count(random_weights_file, image_files):
    # The content term sums over positions and each E_l is divided by M_l²: keeping β ∝ H·W
    # keeps the balance. The images are 48×40, so size 48 gives 48×40 and size 24 gives 24×20.
    content, style = image_files
    weights = {}
    for size in (48, 24):
        problem = jaxstyle.prepare(content, style, weights=random_weights_file, **{**FAST, "size": size, "style_weight": "auto"})
        weights[size] = float(problem.terms['style'].weight[0])
    assert weights[48] == pytest.approx(1000 * 48 * 40 / 512**2, rel=1e-6)
    assert weights[24] == pytest.approx(weights[48] / 4, rel=1e-6)
    explicit = jaxstyle.prepare(content, style, weights=random_weights_file, **{**FAST, "style_weight": 7.0})
    assert float(explicit.terms['style'].weight[0]) == 7.0


def test_images_too_small_for_the_layers(random_weights_file, image_files):
    content, style = image_files
    with pytest.raises(ImageError, match="at least 16 px"):
        jaxstyle.stylize(content, style, weights=random_weights_file, size=12, style_layers=("relu5_1",))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(size=0), "size"),
        (dict(iterations=-3), "iterations"),
        (dict(optimizer="sgd"), "unknown optimizer"),
        (dict(linesearch="wolfe"), "unknown line search 'wolfe'"),
        (dict(style_layers=("relu1_1", "relu6_1")), "relu6_1"),
        (dict(content_weight=-1.0), "content weight"),
        (dict(style_weight=float("inf")), "finite number"),
        (dict(tv_weight=float("nan")), "tv weight"),
        (dict(pooling="median"), "pooling"),
        (dict(init="sketchy"), "init must be"),
        (dict(style_layer_weights=[1.0, 2.0]), "style layer weights"),
        (dict(style_weight="heavy"), "'auto'"),
    ],
)
def test_bad_options_raise_option_error(random_weights_file, image_files, options, message):
    content, style = image_files
    with pytest.raises(OptionError, match=message):
        jaxstyle.stylize(content, style, weights=random_weights_file, **{**FAST, **options})


def test_bad_images_raise_image_error(random_weights_file, image_files, tmp_path):
    content, style = image_files
    (tmp_path / "notes.txt").write_text("not an image")
    for bad, message in [(tmp_path / "absent.png", "does not exist"), (tmp_path / "notes.txt", "not an image"),
                         (np.zeros((5, 5)), "H×W×3")]:  # fmt: skip
        with pytest.raises(ImageError, match=message):
            jaxstyle.stylize(bad, style, weights=random_weights_file, **FAST)


def test_grayscale_and_transparent_inputs_work(random_weights_file, tmp_path, rng):
    gray = Image.fromarray((smooth_image(rng, 32, 32)[..., 0] * 255).astype(np.uint8), "L")
    rgba = Image.fromarray((smooth_image(rng, 32, 32) * 255).astype(np.uint8)).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited onto white
    out = jaxstyle.stylize(gray, rgba, weights=random_weights_file, **{**FAST, "iterations": 0})
    arr = np.asarray(out)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])
