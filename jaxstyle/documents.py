"""The files jaxstyle writes itself (weights, checkpoints): one msgpack document each.

Written with ``flax.serialization`` (no pickle, so reading runs no code), atomically,
and tagged with a format name and version that reading checks first.
"""

from __future__ import annotations

import os
from pathlib import Path

from flax import serialization

from .atomic import atomic_path
from .errors import JaxstyleError


def write_document(path: str | os.PathLike, document: dict) -> Path:
    """Write ``document`` (arrays allowed) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(serialization.msgpack_serialize(document))
    return path


def read_document(
    path: str | os.PathLike, *, fmt: str, version: int, kind: str, error: type[JaxstyleError], hint: str = ""
) -> dict:
    """Read a document of format ``fmt`` and ``version``; anything else raises ``error``.

    ``kind`` names the file in messages ("weights file", "checkpoint"); ``hint`` says
    what to do about a bad one.
    """
    path, tail = Path(path), f"; {hint}" if hint else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{kind} {path} does not exist{tail}") from None
    except OSError as e:
        raise error(f"cannot read {kind} {path}: {e.strerror}") from None
    try:
        document = serialization.msgpack_restore(data)
    except Exception:  # msgpack raises several unrelated types on bad bytes
        raise error(f"{path} is not a jaxstyle {kind} (unreadable or truncated){tail}") from None
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise error(f"{path} is not a jaxstyle {kind}{tail}")
    if document.get("format_version") != version:
        found = document.get("format_version")
        raise error(f"{path} has {kind} format version {found}; this jaxstyle reads version {version}{tail}")
    return document
