"""python -m weights_tools convert SRC -o DST | normalize SRC --images DIR -o DST | inspect FILE | verify FILE

SRC may be Keras' .h5, a PyTorch .pth state dict (torchvision layout or Gatys'
vgg_conv.pth), MatConvNet's .mat, or a jaxstyle weights file; the format is detected.
"""

from __future__ import annotations

import argparse
import sys

from jaxstyle.errors import JaxstyleError, OptionError
from jaxstyle.weights import describe_weights_file, read_weights_file
from jaxstyle.vgg import CONV_LAYERS

from .convert import CONVENTIONS, DTYPES, convert, describe_source, detect_format
from .normalize import normalize_file


def _layers(spec: str | None, up_to: str | None) -> list[str] | None:
    """``FIRST..LAST`` (or --up-to LAST) as the convolutions in between, in order;
    None (all the source has) when neither is given."""
    if spec is not None and up_to is not None:
        raise OptionError("give --layers or --up-to, not both")
    if spec is None:
        return None if up_to is None else CONV_LAYERS[: CONV_LAYERS.index(up_to) + 1]
    first, sep, last = spec.partition("..")
    if not sep or first not in CONV_LAYERS or last not in CONV_LAYERS or CONV_LAYERS.index(first) > CONV_LAYERS.index(last):
        raise OptionError(f"--layers must look like conv1_1..conv5_1 (VGG-19 convolutions, in order), got {spec!r}")
    if first != CONV_LAYERS[0]:
        raise OptionError("--layers must start at conv1_1: every feature is computed from the image up")
    return CONV_LAYERS[CONV_LAYERS.index(first) : CONV_LAYERS.index(last) + 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weights_tools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("convert", help="convert a VGG-19 weights file (format detected) into jaxstyle's")
    n = commands.add_parser("normalize", help="Gatys normalisation: each filter's mean activation over --images is 1")
    for p in (c, n):
        p.add_argument("src", help="Keras .h5, PyTorch .pth, MatConvNet .mat or jaxstyle weights file")
        p.add_argument("-o", "--output", required=True)
        p.add_argument("--convention", choices=sorted(CONVENTIONS), default=None,
                       help="the input convention, when the file does not say (torchvision-layout .pth files)")
        p.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                       help="float16/bfloat16 halve the file (loaded back as float32; features change by ~2e-4 / ~2e-3 relative)")
    c.add_argument("--up-to", default=None, choices=CONV_LAYERS,
                   help="keep the convolutions up to this one (conv5_1 covers the default losses)")  # fmt: skip
    c.add_argument("--layers", default=None, metavar="FIRST..LAST",
                   help="a range of convolutions to keep, e.g. conv1_1..conv5_1 (the default losses' ≈ 52 MB)")
    n.add_argument("--images", required=True, help="a directory of images (natural photos; Gatys used ImageNet)")
    n.add_argument("--size", type=int, default=256, help="longer side the images are resized to (default 256)")
    n.add_argument("--pooling", choices=("max", "avg"), default="max", help="pooling while measuring (default max)")
    i = commands.add_parser("inspect", help="describe a weights file: a jaxstyle file (checked) or any source")
    i.add_argument("file")
    v = commands.add_parser("verify", help="check a jaxstyle weights file: format, shapes, finite values, sha256")
    v.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            jaxstyle_file = detect_format(args.file) == "jaxstyle"
            print(describe_weights_file(args.file) if jaxstyle_file else describe_source(args.file))
        elif args.command == "verify":
            doc = read_weights_file(args.file)
            print(f"ok: {args.file}: {len(doc['layers'])} layers, sha256 {doc['content_sha256']} matches")
        elif args.command == "normalize":
            path, summary = normalize_file(args.src, args.output, args.images, size=args.size,
                                           pooling=args.pooling, convention=args.convention, dtype=args.dtype)  # fmt: skip
            dead = summary["dead_channels"] or "none"
            print(f"{path} (normalised over {summary['images']} images; channels never active: {dead})")
        else:
            layers = _layers(args.layers, args.up_to)
            print(convert(args.src, args.output, layers, args.dtype, args.convention))
    except JaxstyleError as e:
        print(f"weights_tools: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
