"""Every option of a stylization, once: name, default, type, allowed values, one-line help.

``Options`` is the one source of truth: ``stylize``'s and ``prepare``'s keywords, the
command line's flags (generated from the fields, ``add_flags``), the presets (instances
made with ``dataclasses.replace``) and the README's option table (a test compares them).

    options = Options()                                   # the defaults
    PRESETS["fast"]                                       # Options(optimizer="adam", ...)
    resolve("fast", iterations=50)                        # a preset, with explicit options winning
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import OptionError

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
INITS = ("content", "noise", "style")


def _layer_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _layer_weights(text: str) -> tuple[float, ...] | str:
    return text if text == "balanced" else _float_list(text)


def _style_weight(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def option(default, help: str, *, parse: Callable | None = None, choices: tuple | None = None,
           metavar: str | None = None, flag: bool = True, nargs: str | None = None):  # fmt: skip
    """A field of ``Options``: its default and what the command line and the README say of it.

    ``parse`` turns the flag's text into the value (None: a switch, for booleans);
    ``choices`` are the allowed values (the command line's choices; ``prepare`` checks
    them, with its own messages); ``flag=False``
    keeps the option out of the command line (Python only)."""
    metadata = dict(help=help, parse=parse, choices=choices, metavar=metavar, flag=flag, nargs=nargs)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Options:
    """The options of one stylization (see ``stylize``); every item of a batch shares them."""

    size: int = option(512, "the output's longer side in px", parse=int)
    iterations: int = option(500, "optimizer iterations (at each scale)", parse=int)
    optimizer: Any = option("lbfgs", "lbfgs or adam (from Python also any optax.GradientTransformation)",
                            parse=str, choices=("lbfgs", "adam"))  # fmt: skip
    learning_rate: float = option(0.02, "Adam's step size, pixels in [0, 1]", parse=float)
    linesearch: str = option("zoom", "L-BFGS's line search: zoom (strong Wolfe) or backtracking (Armijo)",
                             parse=str, choices=("zoom", "backtracking"))  # fmt: skip
    content_weight: float = option(1.0, "α, the content term's weight", parse=float)
    style_weight: Any = option("auto", "β, or auto: 1000 at 512×512, scaled with the output's pixel count",
                               parse=_style_weight)  # fmt: skip
    tv_weight: float = option(0.0, "γ, the total-variation term's weight", parse=float)
    content_layers: tuple = option(("relu4_2",), "comma-separated VGG-19 layers of the content term", parse=_layer_list)
    style_layers: tuple = option(DEFAULT_STYLE_LAYERS, "comma-separated VGG-19 layers of the style term", parse=_layer_list)
    style_layer_weights: Any = option(None, "one per style layer (default 1/L each), or balanced: every layer "
                                      "counts alike at the start", parse=_layer_weights)  # fmt: skip
    pooling: str = option("max", "VGG-19's pooling: max (as trained) or avg (the paper's)", parse=str,
                          choices=("max", "avg"))  # fmt: skip
    init: Any = option("content", "content, noise, style, or an image", parse=str)
    seed: int = option(0, "seed of the noise init", parse=int)
    style_blend_weights: Any = option(None, "one per style image when they blend (default equal)", parse=_float_list)
    preserve_color: Any = option(None, "keep the content's colours: luminance, histogram or swap", parse=str,
                                 choices=(None, "luminance", "histogram", "swap"))  # fmt: skip
    style_scale: float = option(1.0, "the style images' size relative to the output", parse=float)
    masks: Any = option(None, "one greyscale region mask per style image (white: where it paints)", parse=str,
                        metavar="MASK", nargs="+")  # fmt: skip
    style_loss: str = option("gram", "gram (the paper) or sliced_wasserstein (whole feature distributions)",
                             parse=str, choices=("gram", "sliced_wasserstein"))  # fmt: skip
    average_decay: float = option(0.0, "return the moving average of the iterates with this decay in [0, 1)",
                                  parse=float, metavar="D")  # fmt: skip
    remat: bool = option(False, "recompute each VGG block in the backward pass (less memory, more time)")
    compute_dtype: str = option("float32", "float32, or bfloat16: VGG in bfloat16 (losses stay float32)", parse=str,
                                choices=("float32", "bfloat16"))  # fmt: skip
    convolutions: str = option("auto", "how VGG-19 is computed: auto (the CPU's fast paths on a CPU backend), "
                               "plain (XLA's own) or cpu", parse=str, choices=("auto", "plain", "cpu"))  # fmt: skip
    scales: int = option(1, "coarse to fine: this many sizes ×√2 apart, ending at size", parse=int, metavar="N")
    weights: Any = option(None, "a converted VGG-19 weights file (default: JAXSTYLE_WEIGHTS, the cache, or fetch)",
                          parse=str)  # fmt: skip
    extra_terms: tuple = option((), "loss terms of your own, added to the objective (Python only; see "
                                "examples/custom_term.py)", flag=False)  # fmt: skip

    def replace(self, **changes) -> "Options":
        """A copy with ``changes``; an unknown name is an OptionError naming the known ones."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            raise OptionError(f"unknown option(s) {unknown}; the options are: {', '.join(NAMES)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in FIELDS}


FIELDS = dataclasses.fields(Options)
NAMES = tuple(f.name for f in FIELDS)
DEFAULTS = Options()

#: Named option sets, each the defaults with a few fields replaced; options given
#: explicitly override them (``resolve``).
PRESETS: Mapping[str, Options] = {
    # Gatys, Ecker & Bethge (2016): white-noise init, L-BFGS, average pooling, w_l = 1/5.
    "paper": dataclasses.replace(DEFAULTS, init="noise", optimizer="lbfgs", pooling="avg", iterations=500),
    # Adam from the content image: cheaper iterations, fewer of them.
    "fast": dataclasses.replace(DEFAULTS, init="content", optimizer="adam", learning_rate=0.02, iterations=200),
    # Coarse to fine over three sizes (×√2 apart): the painting's large-scale structure;
    # every style layer counting alike (with its own auto β); the iterates averaged.
    "hq": dataclasses.replace(DEFAULTS, init="content", optimizer="lbfgs", scales=3, iterations=150,
                              style_layer_weights="balanced", average_decay=0.9),
}  # fmt: skip


def resolve(preset: str | None = None, **explicit) -> Options:
    """The options of a run: ``preset``'s (or the defaults), with the ``explicit`` ones replacing theirs."""
    if preset is None:
        base = DEFAULTS
    elif isinstance(preset, str) and preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise OptionError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return base.replace(**explicit)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option, from its field: type, choices and help. Flags left out are
    absent from the parsed namespace (``argparse.SUPPRESS``), so that what the user typed
    can be told from the defaults and win over a preset's values."""
    for f in FIELDS:
        meta = f.metadata
        if not meta["flag"]:
            continue
        shown = f.default if not isinstance(f.default, tuple) else ",".join(map(str, f.default))
        help_text = f"{meta['help']} (default {shown})"
        kwargs: dict = dict(default=argparse.SUPPRESS, help=help_text)
        if meta["parse"] is None:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = meta["parse"]
            if meta["choices"]:
                kwargs["choices"] = [c for c in meta["choices"] if c is not None]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if meta["nargs"]:
                kwargs["nargs"] = meta["nargs"]
        parser.add_argument(flag_name(f.name), **kwargs)


def given(namespace: argparse.Namespace) -> dict:
    """The options the user gave on the command line (the flags ``add_flags`` made)."""
    return {name: getattr(namespace, name) for name in NAMES if hasattr(namespace, name)}


def option_table() -> str:
    """The README's table of options (Markdown), made from the fields."""

    def shown(value) -> str:
        if value is None or value == ():
            return "—"
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    rows = ["| option (`--flag`) | default | what |", "| --- | --- | --- |"]
    for f in FIELDS:
        flag = f" (`{flag_name(f.name)}`)" if f.metadata["flag"] else ""
        rows.append(f"| `{f.name}`{flag} | `{shown(f.default)}` | {f.metadata['help']} |")
    return "\n".join(rows)
