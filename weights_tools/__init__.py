"""Tools that turn published VGG-19 weight files into jaxstyle weights files."""

from .keras_h5 import convert_keras_h5, read_keras_h5

__all__ = ["convert_keras_h5", "read_keras_h5"]
