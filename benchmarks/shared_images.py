"""The images the benchmarks use: ../shared/images when present, else seeded noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def content_and_style(size: int):
    """Tübingen and Starry Night, or random square images of ``size`` without ../shared."""
    content, style = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    if content.is_file() and style.is_file():
        return content, style
    rng = np.random.default_rng(0)
    return rng.random((size, size, 3), np.float32), rng.random((size, size, 3), np.float32)
