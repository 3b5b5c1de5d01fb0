"""A loss term of your own, added to jaxstyle's objective without editing the library.

    python3 examples/custom_term.py [--size 64] [--iterations 30] [-o warm.png]

The term below pulls the picture's mean colour towards a colour you choose (here a
warm orange): L_colour = w · Σ_c (mean_c(x) − target_c)². A term is a pytree (flax's
``struct.PyTreeNode``) that carries its own target and weight as leaves, names the VGG-19
layers it reads as a static field (none here: it reads the image), and is called with
the image and those features. ``prepare(..., extra_terms=[...])`` adds it to the
objective, for every item of a batch; nothing in jaxstyle knows about it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import jaxstyle

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"


class MeanColourTerm(struct.PyTreeNode):
    """w · Σ_c (mean_c(x) − target_c)²: the image's mean colour pulled towards ``target``."""

    target: jax.Array  # (3,) RGB in [0, 1]
    weight: jax.Array  # w
    layers: tuple = struct.field(pytree_node=False, default=())  # the VGG-19 features it reads

    def __call__(self, image: jax.Array, features: dict) -> jax.Array:
        return self.weight * jnp.sum((jnp.mean(image, axis=(0, 1)) - self.target) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default=IMAGES / "tubingen.jpg")
    parser.add_argument("--style", default=IMAGES / "starry_night.jpg")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--weight", type=float, default=1e5)
    parser.add_argument("-o", "--output", type=Path, default=Path("warm.png"))
    args = parser.parse_args()
    warm = MeanColourTerm(target=jnp.asarray([0.9, 0.55, 0.2]), weight=jnp.asarray(args.weight))
    common = dict(size=args.size, iterations=args.iterations)
    plain = jaxstyle.stylize(args.content, args.style, **common)
    painted = jaxstyle.stylize(args.content, args.style, extra_terms=[warm], **common)
    for name, image in (("without the term", plain), ("with the term", painted)):
        print(f"{name}: mean colour {np.round(np.asarray(image, np.float32).mean(axis=(0, 1)) / 255, 3)}")
    painted.save(args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
