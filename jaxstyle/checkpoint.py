"""Checkpoints: a run's image and optimizer state, to continue it later.

A checkpoint is msgpack written with ``flax.serialization`` (no pickle): the format
name and version, the iterations done, a fingerprint of the problem it belongs to,
the images the run started from (they decide balanced layer weights; for coarse to
fine they are the upsampled coarser results, so a resumed run need not recompute it),
and the ``RunState`` as a state dict. Resuming restores the state onto a freshly
initialised one of the same problem, so the run goes on exactly as if it had never
stopped (the loop is deterministic and chunking does not change its result).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from flax import serialization

from .documents import read_document, write_document
from .errors import CheckpointError
from .optimize import RunState

FORMAT = "jaxstyle-checkpoint"
FORMAT_VERSION = 4  # 2: the start image; 3: batched L-BFGS state; 4: loss terms as pytrees, converged members


def problem_fingerprint(problem) -> str:
    """sha256 of what decides a run's trajectory: layers, optimizer, image shape, loss terms.

    The terms carry the targets and weights, both images and α, β, γ; the iteration count and
    the init are left out, so a resumed run may be asked to go further.
    """
    h = hashlib.sha256()
    h.update(repr((problem.objective.layers, problem.optimizer, problem.init_images.shape)).encode())
    for leaf in jax.tree.leaves(jax.device_get(problem.terms)):
        a = np.ascontiguousarray(leaf)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: RunState, iteration: int, fingerprint: str, *, start_images) -> Path:
    """Write ``state`` after ``iteration`` iterations of the run that began at ``start_images``
    (K, H, W, 3), atomically."""
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "fingerprint": fingerprint,
        "start_images": np.asarray(start_images, np.float32),
        "state": serialization.to_state_dict(jax.device_get(state)),
    }
    return write_document(path, document)


class Checkpoint(NamedTuple):
    """A checkpoint file, read and format-checked once (its state can be large)."""

    path: Path
    document: dict


def read_checkpoint(checkpoint: str | os.PathLike | Checkpoint) -> Checkpoint:
    """The checkpoint at a path, read; one already read passes through."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    path = Path(checkpoint)
    hint = "start afresh without --resume"
    return Checkpoint(path, read_document(path, fmt=FORMAT, version=FORMAT_VERSION, kind="checkpoint",
                                          error=CheckpointError, hint=hint))  # fmt: skip


def checkpoint_start_images(checkpoint: str | os.PathLike | Checkpoint) -> np.ndarray:
    """The (K, H, W, 3) images in [0, 1] the checkpointed run started from."""
    path, document = read_checkpoint(checkpoint)
    images = document.get("start_images")
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 or not np.all(np.isfinite(images)):
        raise CheckpointError(f"{path}: no valid start images in the checkpoint; start afresh without --resume")
    return images.astype(np.float32)


def load_checkpoint(checkpoint: str | os.PathLike | Checkpoint, template: RunState, fingerprint: str) -> tuple[RunState, int]:
    """A checkpoint of the problem whose fresh state is ``template``: (state, iterations done)."""
    path, document = read_checkpoint(checkpoint)
    if document.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run (other images, weights, layers, weights α/β/γ, "
            "optimizer or size): resume with the same ones, or start afresh without resuming"
        )
    try:
        state = serialization.from_state_dict(template, document["state"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: the saved state does not fit this run ({e})") from None
    for saved, fresh in zip(jax.tree.leaves(state), jax.tree.leaves(template)):
        if np.shape(saved) != np.shape(fresh):
            raise CheckpointError(f"{path}: the saved state does not fit this run (array shapes differ)")
    iteration = document.get("iteration")
    if not isinstance(iteration, int) or iteration < 0:
        raise CheckpointError(f"{path}: no valid iteration count")
    state = jax.tree.map(lambda saved, fresh: jax.numpy.asarray(saved, fresh.dtype), state, template)
    return state, iteration
