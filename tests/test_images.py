"""Odd but valid images load as a viewer shows them; broken ones give ImageError."""

import struct

import numpy as np
import pytest
from PIL import Image

from jaxstyle import ImageError
from jaxstyle.images import load_image, to_array


def _load(image, tmp_path, name="in.png", **save):
    path = tmp_path / name
    image.save(path, **save)
    return np.asarray(load_image(path))


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535 in steps
    got = _load(Image.fromarray(grey), tmp_path)
    want = np.round(grey / 65535 * 255).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], want)


def test_cmyk_palette_and_grey(tmp_path):
    cmyk = Image.new("CMYK", (3, 1))
    for x, ink in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)]):  # paper, cyan, black
        cmyk.putpixel((x, 0), ink)
    np.testing.assert_array_equal(_load(cmyk, tmp_path, "c.jpg", quality=100)[0], [[255, 255, 255], [0, 255, 255], [0, 0, 0]])

    palette = np.array([[255, 0, 0], [0, 0, 255], [10, 200, 30]], np.uint8)
    indices = np.array([[0, 1, 2, 1]], np.uint8)
    p = Image.fromarray(indices, "P")
    p.putpalette(palette.ravel().tolist())
    np.testing.assert_array_equal(_load(p, tmp_path, "p.png"), palette[indices])


def test_alpha_is_composited_onto_white(tmp_path):
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128]]], np.uint8)
    got = _load(Image.fromarray(rgba, "RGBA"), tmp_path).astype(int)
    a = 128 / 255
    want = [[200, 100, 0], [255, 255, 255], [round(a * 200 + (1 - a) * 255), round(a * 100 + (1 - a) * 255), round((1 - a) * 255)]]
    assert np.abs(got[0] - np.array(want)).max() <= 1
    la = Image.fromarray(np.array([[[60, 0], [60, 255]]], np.uint8), "LA")
    np.testing.assert_array_equal(_load(la, tmp_path, "la.png")[0], [[255] * 3, [60] * 3])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 40, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    got = _load(Image.fromarray(pixels), tmp_path, "r.png", exif=exif)
    np.testing.assert_array_equal(got, np.rot90(pixels, k=-1))


def _icc_rgb_profile(red, green, blue, gamma=2.2):
    """A minimal ICC v2 matrix/TRC display profile with the given D50 primaries."""
    s15 = lambda v: struct.pack(">i", round(v * 65536))  # noqa: E731
    xyz = lambda x, y, z: b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)  # noqa: E731
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(*red)), (b"gXYZ", xyz(*green)),
            (b"bXYZ", xyz(*blue)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]  # fmt: skip
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        table, data = table + sig + struct.pack(">II", offset + len(data), len(body)), data + body
    header = (struct.pack(">I", offset + len(data)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))  # fmt: skip
    return header + struct.pack(">I", len(tags)) + table + data


def test_an_embedded_colour_profile_is_converted_to_srgb(tmp_path):
    # sRGB's primaries (D50-adapted) with red and green swapped: pure "red" numbers mean green.
    r, g, b = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    image = Image.new("RGB", (2, 2), (200, 50, 0))
    swapped = _load(image, tmp_path, "swapped.png", icc_profile=_icc_rgb_profile(g, r, b)).astype(int)
    plain = _load(image, tmp_path, "srgb_like.png", icc_profile=_icc_rgb_profile(r, g, b)).astype(int)
    # Gamma 2.2 stands in for sRGB's curve, hence a few levels of tolerance.
    assert np.abs(swapped - [50, 200, 0]).max() <= 6, swapped[0, 0]
    assert np.abs(plain - [200, 50, 0]).max() <= 6, plain[0, 0]
    # A broken profile is ignored: the numbers are taken as sRGB.
    np.testing.assert_array_equal(_load(image, tmp_path, "junk.png", icc_profile=b"junk" * 40)[0, 0], [200, 50, 0])


def test_decompression_bombs_are_refused_naming_the_limit(tmp_path, monkeypatch):
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1,600 px is over twice that: Pillow refuses
    with pytest.raises(ImageError, match="too large to decode safely.*twice PIL.Image.MAX_IMAGE_PIXELS = 500 pixels"):
        load_image(tmp_path / "big.png", "content image")


def test_truncated_corrupt_and_non_image_files(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "ok.png")
    Image.fromarray(pixels).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:300])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("a shopping list")
    (tmp_path / "folder.png").mkdir()
    cases = {"cut.png": "truncated or corrupt", "cut.jpg": "truncated or corrupt", "empty.png": "not an image",
             "text.jpg": "not an image", "folder.png": "directory", "absent.png": "does not exist"}  # fmt: skip
    for name, message in cases.items():
        with pytest.raises(ImageError, match=message):
            to_array(load_image(tmp_path / name, "style image"))
