"""Reading, resizing and writing images. Arrays are float32 H×W×3 RGB in [0, 1]."""

from __future__ import annotations

import functools
import io
import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageOps, UnidentifiedImageError

from .atomic import atomic_path
from .errors import ImageError, OutputError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit sRGB, the way a viewer would show it."""
    image = ImageOps.exif_transpose(image)  # honour the camera's orientation tag
    icc = image.info.get("icc_profile")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16/32-bit grey: Pillow's own convert clips at 255 (nearly white); scale instead.
        grey = np.asarray(image, np.float64)
        full = 1.0 if image.mode == "F" else 65535.0  # float images are taken to be in [0, 1]
        image = Image.fromarray(np.round(np.clip(grey / full, 0, 1) * 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels are composited onto white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if icc and image.mode in ("RGB", "CMYK", "L", "RGBA"):
        try:  # an embedded colour profile (Adobe RGB, a CMYK press profile...): convert to sRGB
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, _srgb(), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: take the numbers as they are, like most viewers
    return image.convert("RGB")


@functools.cache
def _srgb():
    return ImageCms.createProfile("sRGB")


def load_image(image: ImageLike, what: str = "image") -> Image.Image:
    """Return ``image`` (a path, PIL image or H×W×3 array) as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if isinstance(image, np.ndarray):
        return Image.fromarray(array_to_uint8(image, what))
    if not isinstance(image, (str, os.PathLike)):
        raise ImageError(f"{what} must be a path, a PIL image or an H×W×3 array, got {type(image).__name__}")
    path = Path(image)
    try:
        with Image.open(path) as opened:
            opened.load()
            return _to_rgb(opened)
    except FileNotFoundError:
        raise ImageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ImageError(f"{what} {path} is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} {path} is not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(
            f"{what} {path} is too large to decode safely ({str(e).rstrip('.')}): Pillow refuses images "
            f"over twice PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,} pixels against "
            "decompression bombs; if you trust the file, raise that limit or shrink the image first"
        ) from None
    except OSError as e:
        raise ImageError(f"{what} {path} could not be decoded (truncated or corrupt?): {e}") from None


def array_to_uint8(array: np.ndarray, what: str = "image") -> np.ndarray:
    """An H×W×3 array (uint8, or float in [0, 1]) as uint8."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ImageError(f"{what} array must have shape H×W×3, got {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(f"{what} array must be uint8 or float in [0, 1], got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ImageError(f"{what} array holds NaN or infinite values")
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def fit_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is ``size``, keeping the aspect ratio."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_array(image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PIL image as float32 H×W×3 in [0, 1], resized to ``size`` = (width, height) if given."""
    if size is not None and image.size != tuple(size):
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


def to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array_to_uint8(np.asarray(array, dtype=np.float32)))


def check_output_path(path: str | os.PathLike, inputs: tuple = ()) -> str:
    """Raise OutputError unless an image can be written at ``path``; return Pillow's format name.

    ``inputs`` are the run's input images: an output may never replace one of them.
    """
    path = Path(path)
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and same_file(path, Path(source)):
            raise OutputError(f"output {path} is one of the input images; choose another output path")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name such as out.png")
    ext = path.suffix.lower()
    if ext not in Image.registered_extensions():
        raise OutputError(f"cannot tell the image format of output {path}; use a suffix such as .png or .jpg")
    image_format = Image.registered_extensions()[ext]
    if image_format not in Image.SAVE:  # Pillow reads it but cannot write it (PSD, say)
        raise OutputError(f"Pillow cannot write {image_format} files (output {path}); use a suffix such as .png or .jpg")
    return image_format


def save_image(image: Image.Image, path: str | os.PathLike, inputs: tuple = ()) -> Path:
    """Write ``image`` atomically to ``path``; refuse to overwrite any of ``inputs``."""
    path = Path(path)
    image_format = check_output_path(path, inputs)
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format=image_format)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from None
    return path


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def grid(images: Sequence, *, captions: Sequence[str] | None = None, columns: int | None = None, gap: int = 4) -> Image.Image:
    """The images (PIL, or H×W×3 arrays: uint8, or float in [0, 1]) side by side in rows of
    ``columns`` (default: about square), each with its caption below if given."""
    pictures = [as_pil(image) for image in images]
    if not pictures:
        raise ValueError("grid needs at least one image")
    if captions is not None and len(captions) != len(pictures):
        raise ValueError(f"{len(captions)} captions for {len(pictures)} images; give one each")
    columns = columns or math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    w, h = max(p.width for p in pictures), max(p.height for p in pictures)
    text_h = 14 if captions is not None else 0
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * (h + text_h) + (rows - 1) * gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, picture in enumerate(pictures):
        x, y = (i % columns) * (w + gap), (i // columns) * (h + text_h + gap)
        sheet.paste(picture, (x, y))
        if captions is not None:
            draw.text((x + 2, y + h + 1), str(captions[i]), fill="black")
    return sheet


def as_pil(image) -> Image.Image:
    """An RGB PIL image from a PIL image or an H×W×3 array (uint8, or float in [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(array, "RGB")
