"""python -m weights_tools convert SRC -o DST [--up-to conv5_1]"""

from __future__ import annotations

import argparse
import sys

from jaxstyle.errors import JaxstyleError
from jaxstyle.vgg import CONV_LAYERS

from .keras_h5 import convert_keras_h5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weights_tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("convert", help="convert Keras' VGG-19 HDF5 file into a jaxstyle weights file")
    c.add_argument("src")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--up-to", default=CONV_LAYERS[-1], choices=CONV_LAYERS,
                   help="keep the convolutions up to this one (conv5_1 covers the default losses)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        layers = CONV_LAYERS[: CONV_LAYERS.index(args.up_to) + 1]
        print(convert_keras_h5(args.src, args.output, layers))
    except JaxstyleError as e:
        print(f"weights_tools: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
