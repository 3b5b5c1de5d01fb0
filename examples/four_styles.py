"""Tübingen in four styles at once: one compiled program, sharded over every device there is.

    python3 examples/four_styles.py [--size 256] [--iterations 300] [--out-dir four_styles]

On a TPU or multi-GPU runtime the four items spread over the devices; on one CPU or
GPU they run as one vmapped batch. Uses ../shared/images (or pass your own paths).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

import jaxstyle
from jaxstyle.images import save_image

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
STYLES = ["starry_night.jpg", "the_scream.jpg", "great_wave_hokusai.jpg", "composition_vii_kandinsky.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", type=Path, default=IMAGES / "tubingen.jpg")
    parser.add_argument("--styles", type=Path, nargs="+", default=[IMAGES / s for s in STYLES])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out-dir", type=Path, default=Path("four_styles"))
    args = parser.parse_args()

    print(f"{len(args.styles)} styles on {len(jax.devices())} {jax.devices()[0].platform} device(s)")
    start = time.perf_counter()
    images = jaxstyle.stylize_batch(
        args.content, args.styles, size=args.size, iterations=args.iterations,
        callback=lambda p: print(f"  iteration {p.iteration}/{p.iterations}", end="\r", flush=True),
    )  # fmt: skip
    print(f"\n{len(images)} images in {time.perf_counter() - start:.0f} s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for style, image in zip(args.styles, images):
        path = args.out_dir / f"{args.content.stem}_{style.stem}.png"
        save_image(image, path, inputs=(args.content, *args.styles))  # atomic; never over an input
        print(f"saved {path}")


if __name__ == "__main__":
    main()
