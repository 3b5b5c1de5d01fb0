"""Every VGG-19 format weights_tools converts, each checked against the others and by hand."""

import os
import pickle
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
import reference
from conftest import smooth_image
from test_weights import write_keras_h5
from weight_files import _global as pickle_global
from weight_files import TORCH_INDEX, gatys_layout, torchvision_layout, write_matconvnet, write_torch_file

from jaxstyle import WeightsError, load_weights
from jaxstyle.errors import OptionError
from jaxstyle.vgg import CAFFE_PREPROCESSING, CONV_SHAPES, vgg19_features
from jaxstyle.weights import read_weights_file
from weights_tools.__main__ import main as weights_tools_main
from weights_tools.convert import TORCHVISION_PREPROCESSING, convert, detect_format
from jaxstyle.keras_h5 import convert_keras_h5
from weights_tools.normalize import mean_activations, normalize_file
from weights_tools.torch_files import TorchFile, UnsafePickleError

LAYERS = ("conv1_1", "conv1_2", "conv2_1")
FEATURES = ("relu1_1", "relu1_2", "pool1", "relu2_1")


def features(weights_path, image):
    return vgg19_features(load_weights(weights_path), jnp.asarray(image)[None], FEATURES)


def relative_gap(a, b):
    return max(float(jnp.linalg.norm(a[k] - b[k]) / jnp.linalg.norm(b[k])) for k in b)


@pytest.fixture
def keras_file(tmp_path, rng):
    arrays = write_keras_h5(tmp_path / "vgg19.h5", rng)
    params = {name: {"kernel": k, "bias": b} for name, (k, b) in arrays.items()}
    return tmp_path / "vgg19.h5", params


def test_every_format_gives_the_features_of_the_keras_file(tmp_path, rng, keras_file):
    """The same weights in five containers convert to the same network (≤ 1e-5 relative)."""
    src, params = keras_file
    image = smooth_image(rng, 40, 48)
    reference = features(convert(src, tmp_path / "keras.msgpack", LAYERS), image)
    sources = {
        "torchvision-zip": write_torch_file(tmp_path / "tv.pth", torchvision_layout(params, LAYERS)),
        "torchvision-legacy": write_torch_file(tmp_path / "tvl.pth", torchvision_layout(params, LAYERS), legacy=True),
        "gatys": write_torch_file(tmp_path / "vgg_conv.pth", gatys_layout(params, LAYERS)),
        "matconvnet": write_matconvnet(tmp_path / "vgg.mat", params, LAYERS, CAFFE_PREPROCESSING.mean[::-1],
                                       bgr_weights=True),  # fmt: skip
    }
    for kind, path in sources.items():
        convention = "caffe" if kind.startswith("torchvision") else None
        out = convert(path, tmp_path / f"{kind}.msgpack", LAYERS, convention=convention)
        gap = relative_gap(features(out, image), reference)
        assert gap <= 1e-5, (kind, gap)
    # MatConvNet's convention is RGB with its own mean, yet the same network.
    doc = read_weights_file(tmp_path / "matconvnet.msgpack")
    assert doc["preprocessing"]["channel_order"] == "RGB"
    np.testing.assert_allclose(doc["preprocessing"]["mean"], [123.68, 116.779, 103.939], rtol=1e-6)
    assert read_weights_file(tmp_path / "gatys.msgpack")["source"]["kind"] == "pytorch-gatys"
    assert detect_format(sources["torchvision-legacy"]) == "pytorch"


def test_torchvision_convention_matches_a_hand_computed_first_layer(tmp_path, rng):
    """A torchvision file (recognised by its published name) computes
    relu(conv((x - mean) / std)) on RGB input, checked with numpy."""
    kernel = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)  # OIHW
    bias = rng.standard_normal(64).astype(np.float32)
    path = write_torch_file(tmp_path / "vgg19-dcbb9e9d.pth", {"features.0.weight": kernel, "features.0.bias": bias})
    out = convert(path, tmp_path / "tv.msgpack", ["conv1_1"])
    doc = read_weights_file(out)
    assert "torchvision" in doc["source"]["convention"] and "file name" in doc["source"]["convention"]
    image = smooth_image(rng, 9, 11)
    got = np.asarray(vgg19_features(load_weights(out), jnp.asarray(image)[None], ["relu1_1"])["relu1_1"][0])
    x = (image - np.array(TORCHVISION_PREPROCESSING.mean)) / np.array(TORCHVISION_PREPROCESSING.std)
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    want = np.zeros((9, 11, 64))
    for dy in range(3):
        for dx in range(3):  # cross-correlation: no kernel flip
            want += padded[dy : dy + 9, dx : dx + 11] @ kernel[:, :, dy, dx].T
    np.testing.assert_allclose(got, np.maximum(want + bias, 0), rtol=1e-4, atol=1e-4)


def test_torchvision_layout_without_a_known_origin_needs_a_convention(tmp_path, keras_file):
    _, params = keras_file
    path = write_torch_file(tmp_path / "mine.pth", torchvision_layout(params, LAYERS))
    with pytest.raises(WeightsError, match="--convention torchvision or --convention caffe"):
        convert(path, tmp_path / "o.msgpack", LAYERS)
    with pytest.raises(OptionError, match="convention must be one of"):
        convert(path, tmp_path / "o.msgpack", LAYERS, convention="bgr")
    assert not (tmp_path / "o.msgpack").exists()
    doc = read_weights_file(convert(path, tmp_path / "o.msgpack", LAYERS, convention="torchvision"))
    assert doc["preprocessing"]["channel_order"] == "RGB" and doc["source"]["convention"] == "torchvision (given)"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"features.0.weight": _RunsCode(marker)}, protocol=2)
    zipped = tmp_path / "evil.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", payload)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001) + pickle.dumps({}) + payload)
    bare = tmp_path / "evil_bare.pth"
    bare.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    for path in (zipped, legacy, bare):
        with pytest.raises(UnsafePickleError, match=r"refused to load: its pickle asks for (posix|os)\.system"):
            convert(path, tmp_path / "o.msgpack", LAYERS, convention="caffe")
    assert not marker.exists()
    assert not (tmp_path / "o.msgpack").exists()


def test_a_pickled_model_object_is_refused_with_advice(tmp_path):
    # torch.save(model) pickles the model's class; the reader must not import it.
    payload = b"\x80\x02" + pickle_global("torchvision.models.vgg", "VGG") + b")\x81."
    with zipfile.ZipFile(tmp_path / "model.pth", "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(UnsafePickleError, match=r"torchvision\.models\.vgg\.VGG.*re-save model\.state_dict\(\)"):
        TorchFile(tmp_path / "model.pth")


def test_wrong_networks_and_damaged_files_are_refused(tmp_path, keras_file):
    _, params = keras_file
    vgg16ish = torchvision_layout(params, LAYERS)
    vgg16ish["features.2.weight"] = np.zeros((64, 64, 3, 3), np.float32)[:32]  # wrong shape
    path = write_torch_file(tmp_path / "bad.pth", vgg16ish)
    with pytest.raises(WeightsError, match="conv1_2 has kernel/bias shapes"):
        convert(path, tmp_path / "o.msgpack", LAYERS, convention="caffe")
    short = write_torch_file(tmp_path / "short.pth", torchvision_layout(params, LAYERS[:2]))
    with pytest.raises(WeightsError, match=r"no features\.5\.weight/\.bias for conv2_1.*VGG-16"):
        convert(short, tmp_path / "o.msgpack", LAYERS, convention="caffe")
    other = write_torch_file(tmp_path / "other.pth", {"fc.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(WeightsError, match="not VGG-19's: expected keys 'features.0.weight'"):
        convert(other, tmp_path / "o.msgpack", LAYERS)
    good = write_torch_file(tmp_path / "good.pth", torchvision_layout(params, LAYERS), legacy=True).read_bytes()
    (tmp_path / "cut.pth").write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightsError, match="truncated|not a readable PyTorch file"):
        convert(tmp_path / "cut.pth", tmp_path / "o.msgpack", LAYERS, convention="caffe")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(WeightsError, match="not a VGG-19 weights format jaxstyle knows"):
        convert(tmp_path / "text.pth", tmp_path / "o.msgpack", LAYERS)
    assert not (tmp_path / "o.msgpack").exists()


def test_half_precision_files_are_half_the_size_and_close(tmp_path, rng, keras_file):
    src, _ = keras_file
    image = smooth_image(rng, 32, 32)
    full = convert(src, tmp_path / "f32.msgpack", LAYERS)
    reference = features(full, image)
    for dtype, tolerance in (("float16", 1e-3), ("bfloat16", 1e-2)):
        half = convert(src, tmp_path / f"{dtype}.msgpack", LAYERS, dtype=dtype)
        assert read_weights_file(half)["dtype"] == dtype
        assert half.stat().st_size < 0.55 * full.stat().st_size
        assert load_weights(half)["conv1_1"]["kernel"].dtype == np.float32
        gap = relative_gap(features(half, image), reference)
        assert 0 < gap < tolerance, (dtype, gap)


def test_normalised_features_are_the_originals_divided_by_their_means(tmp_path, rng, keras_file):
    src, params = keras_file
    params["conv1_2"]["kernel"][..., 5] = 0.0
    params["conv1_2"]["bias"][5] = -1.0  # channel 5 never activates: it must keep its scale
    src = write_torch_file(tmp_path / "dead.pth", gatys_layout(params, LAYERS))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i, (h, w) in enumerate([(40, 56), (48, 48), (36, 60)]):
        Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(images / f"{i}.png")
    out, summary = normalize_file(src, tmp_path / "norm.msgpack", images, size=48)
    original = convert(src, tmp_path / "orig.msgpack", LAYERS)
    from weights_tools.normalize import image_files, load_images

    # The expected means from the numpy reference network (float64), not from mean_activations.
    def get_conv(b, c):
        name = f"conv{b}_{c}"
        return params[name]["kernel"], params[name]["bias"]

    loaded = load_images(image_files(images), 48)
    relus = ["relu" + name[4:] for name in LAYERS]
    per_image = [reference.vgg_features(get_conv, image, relus) for image in loaded]
    means = {name: sum(f[relu].sum(axis=(0, 1)) for f in per_image) / sum(f[relu].shape[0] * f[relu].shape[1] for f in per_image)
             for name, relu in zip(LAYERS, relus)}  # fmt: skip
    assert means["conv1_2"][5] == 0 and summary["images"] == 3
    assert summary["dead_channels"] == {n: int(np.sum(m == 0)) for n, m in means.items() if np.any(m == 0)}
    # The normalised net's mean activations over the same images are 1 (dead channels: 0).
    normalized_means = mean_activations(load_weights(out), load_images(image_files(images), 48), LAYERS)
    for name in LAYERS:
        want = np.where(means[name] > 0, 1.0, 0.0)
        assert want.shape == (CONV_SHAPES[name][-1],)
        np.testing.assert_allclose(normalized_means[name], want, rtol=1e-4, atol=1e-6)
    # On another image, every normalised activation is the original one over its mean.
    image = jnp.asarray(smooth_image(rng, 33, 45))[None]
    relus = ["relu1_1", "relu1_2", "relu2_1"]
    a = vgg19_features(load_weights(original), image, relus)
    b = vgg19_features(load_weights(out), image, relus)
    for relu, name in zip(relus, LAYERS):
        scale = np.where(means[name] > 0, means[name], 1.0)
        want = np.asarray(a[relu]) / scale
        assert np.linalg.norm(np.asarray(b[relu]) - want) <= 1e-5 * np.linalg.norm(want), relu
    assert "Gatys" in read_weights_file(out)["source"]["normalized"]


def test_command_line_converts_inspects_and_normalises(tmp_path, rng, keras_file, capsys):
    src, params = keras_file
    pth = write_torch_file(tmp_path / "tv.pth", torchvision_layout(params, LAYERS))
    assert weights_tools_main(["inspect", str(pth)]) == 0
    shown = capsys.readouterr().out
    assert "pytorch-torchvision" in shown and "--convention caffe|torchvision" in shown
    assert weights_tools_main(["convert", str(pth), "-o", str(tmp_path / "a.msgpack"), "--up-to", "conv2_1"]) == 4
    assert "--convention" in capsys.readouterr().err
    code = weights_tools_main(["convert", str(pth), "-o", str(tmp_path / "a.msgpack"), "--up-to", "conv2_1",
                               "--convention", "caffe", "--dtype", "bfloat16"])  # fmt: skip
    assert code == 0 and read_weights_file(tmp_path / "a.msgpack")["layers"] == list(LAYERS)
    assert weights_tools_main(["verify", str(tmp_path / "a.msgpack")]) == 0
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray((smooth_image(rng, 30, 40) * 255).astype(np.uint8)).save(tmp_path / "imgs" / "a.jpg")
    argv = ["normalize", str(src), "--images", str(tmp_path / "imgs"), "-o", str(tmp_path / "n.msgpack"), "--size", "32"]
    assert weights_tools_main(argv) == 0
    assert "normalised over 1 images" in capsys.readouterr().out
    assert weights_tools_main(["normalize", str(src), "--images", str(tmp_path / "none"), "-o", "x"]) == 2


def test_keras_helper_still_converts(tmp_path, keras_file):
    src, params = keras_file
    out = convert_keras_h5(src, tmp_path / "k.msgpack", LAYERS, dtype="bfloat16")
    np.testing.assert_allclose(load_weights(out)["conv1_1"]["kernel"], params["conv1_1"]["kernel"], rtol=1e-2, atol=1e-3)


# -- against torch itself, where it is installed (an optional extra; CI runs without it) --


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_files_written_by_torch_read_as_torch_loads_them(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    state = {
        "plain": torch.randn(3, 4),
        "transposed": base.t(),  # non-contiguous strides
        "slice": base[2:5, 3:7],  # an offset into a shared storage
        "half": torch.randn(5).half(),
        "bf16": torch.randn(4).bfloat16(),
        "param": torch.nn.Parameter(torch.randn(2, 3)),
        "long": torch.arange(7),
    }
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    expected = torch.load(path, weights_only=True)
    with TorchFile(path) as f:
        assert f.format == ("pytorch-legacy" if legacy else "pytorch-zip")
        for name, ref in f.obj.items():
            want = expected[name].detach()
            got = f.read(ref)
            want = want.float().numpy() if want.dtype == torch.bfloat16 else want.numpy()
            np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=name)


def test_torchvision_files_compute_what_torch_computes(tmp_path, rng):
    """torch.save'd torchvision-layout weights: jaxstyle's features equal torch's own
    forward pass on (x - mean) / std, through conv2_1."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    state = {}
    for name in LAYERS:
        shape = CONV_SHAPES[name]
        w = (rng.standard_normal((shape[3], shape[2], 3, 3)) * np.sqrt(2 / (9 * shape[2]))).astype(np.float32)
        state[f"features.{TORCH_INDEX[name]}.weight"] = torch.from_numpy(w)
        state[f"features.{TORCH_INDEX[name]}.bias"] = torch.from_numpy((0.1 * rng.standard_normal(shape[3])).astype(np.float32))
    torch.save(state, tmp_path / "tv.pth")
    out = convert(tmp_path / "tv.pth", tmp_path / "tv.msgpack", convention="torchvision")
    image = smooth_image(rng, 36, 44)
    ours = features(out, image)
    mean, std = torch.tensor(TORCHVISION_PREPROCESSING.mean), torch.tensor(TORCHVISION_PREPROCESSING.std)
    x = ((torch.from_numpy(image) - mean) / std).permute(2, 0, 1)[None].float()
    theirs = {}
    with torch.inference_mode():
        for name, feature in [("conv1_1", "relu1_1"), ("conv1_2", "relu1_2"), (None, "pool1"), ("conv2_1", "relu2_1")]:
            if name is None:
                x = F.max_pool2d(x, 2)
            else:
                i = TORCH_INDEX[name]
                x = F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
            theirs[feature] = jnp.asarray(x.permute(0, 2, 3, 1).numpy())
    assert relative_gap(ours, theirs) <= 1e-5


@pytest.mark.real_weights
def test_real_weights_round_trip_through_torch_save(tmp_path, rng, real_weights_path):
    """The real Keras weights saved by torch.save in torchvision's layout convert back
    to a network with identical features."""
    torch = pytest.importorskip("torch")
    params = load_weights(real_weights_path)
    convs = [name for name in params if name != "input"]
    state = {k: torch.from_numpy(np.array(v)) for k, v in torchvision_layout(params, convs).items()}
    torch.save(state, tmp_path / "vgg19_caffe.pth")
    out = convert(tmp_path / "vgg19_caffe.pth", tmp_path / "back.msgpack", convention="caffe")
    image = jnp.asarray(smooth_image(rng, 64, 64))[None]
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    a = vgg19_features(params, image, layers)
    b = vgg19_features(load_weights(out), image, layers)
    assert relative_gap(b, a) == 0.0
