"""Tools that turn published VGG-19 weight files into jaxstyle weights files."""

from .convert import convert, detect_format, read_source
from jaxstyle.keras_h5 import convert_keras_h5, read_keras_h5
from .normalize import normalize_file

__all__ = ["convert", "convert_keras_h5", "detect_format", "normalize_file", "read_keras_h5", "read_source"]
