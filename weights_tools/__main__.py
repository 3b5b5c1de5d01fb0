"""python -m weights_tools convert SRC -o DST [--layers conv1_1..conv5_1] | inspect FILE | verify FILE"""

from __future__ import annotations

import argparse
import sys

from jaxstyle.errors import JaxstyleError, OptionError
from jaxstyle.weights import describe_weights_file, read_weights_file
from jaxstyle.vgg import CONV_LAYERS

from .keras_h5 import convert_keras_h5


def _layers(spec: str | None, up_to: str | None) -> list[str]:
    """``FIRST..LAST`` (or --up-to LAST) as the convolutions in between, in order."""
    if spec is not None and up_to is not None:
        raise OptionError("give --layers or --up-to, not both")
    if spec is None:
        return CONV_LAYERS[: CONV_LAYERS.index(up_to or CONV_LAYERS[-1]) + 1]
    first, sep, last = spec.partition("..")
    if not sep or first not in CONV_LAYERS or last not in CONV_LAYERS or CONV_LAYERS.index(first) > CONV_LAYERS.index(last):
        raise OptionError(f"--layers must look like conv1_1..conv5_1 (VGG-19 convolutions, in order), got {spec!r}")
    if first != CONV_LAYERS[0]:
        raise OptionError("--layers must start at conv1_1: every feature is computed from the image up")
    return CONV_LAYERS[CONV_LAYERS.index(first) : CONV_LAYERS.index(last) + 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weights_tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("convert", help="convert Keras' VGG-19 HDF5 file into a jaxstyle weights file")
    c.add_argument("src")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--up-to", default=None, choices=CONV_LAYERS,
                   help="keep the convolutions up to this one (conv5_1 covers the default losses)")  # fmt: skip
    c.add_argument("--layers", default=None, metavar="FIRST..LAST",
                   help="a range of convolutions to keep, e.g. conv1_1..conv5_1 (the default losses' ≈ 52 MB)")
    c.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="float16 halves the file (loaded back as float32; VGG-19 features change by ~2e-4 relative)")
    i = commands.add_parser("inspect", help="describe a jaxstyle weights file (checked first)")
    i.add_argument("file")
    v = commands.add_parser("verify", help="check a weights file: format, shapes, finite values, sha256")
    v.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            print(describe_weights_file(args.file))
        elif args.command == "verify":
            doc = read_weights_file(args.file)
            print(f"ok: {args.file}: {len(doc['layers'])} layers, sha256 {doc['content_sha256']} matches")
        else:
            print(convert_keras_h5(args.src, args.output, _layers(args.layers, args.up_to), args.dtype))
    except JaxstyleError as e:
        print(f"weights_tools: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
