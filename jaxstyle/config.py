"""Every option of a stylization, once: name, default, type, allowed values, one-line help,
and its check.

``Options`` is the one source of truth: ``stylize``'s and ``prepare``'s keywords, the
command line's flags (generated from the fields, ``add_flags``), the presets (instances
made with ``dataclasses.replace``), the README's option table (a test compares them) and
validation (``Options.checked``: each field's check, then the checks across fields).

    options = Options()                                   # the defaults
    PRESETS["fast"]                                       # Options(optimizer="adam", ...)
    resolve("fast", iterations=50)                        # a preset, with explicit options winning
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .checks import finite_number, whole_number
from .color import MODES as COLOR_MODES
from .convolutions import CHOICES as CONVOLUTIONS, strategy_name
from .errors import OptionError
from .objective import check_compute_dtype, check_style_loss
from .optimize import check_average_decay, check_learning_rate, check_linesearch, check_optimizer_name, check_tolerance
from .terms import check_extra_terms
from .vgg import check_layers, check_pooling

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
INITS = ("content", "noise", "style")
COLOR_CHOICES = (None, *COLOR_MODES)


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


# -- checks: each takes a value and returns it clean, or raises a one-line OptionError ---------


def _whole(what: str, minimum: int) -> Callable:
    return lambda value: whole_number(value, what, minimum=minimum)


def _number(what: str, positive: bool = False) -> Callable:
    return lambda value: finite_number(value, what, positive=positive)


def _one_of(what: str, choices: tuple) -> Callable:
    def check(value):
        if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
            shown = ", ".join("None" if c is None else str(c) for c in choices)
            raise OptionError(f"{what} must be one of {shown}, got {value!r}")
        return value

    return check


def _style_weight_value(value):
    if isinstance(value, str):
        if value != "auto":
            raise OptionError(f"style_weight must be a number ≥ 0 or 'auto', got {value!r}")
        return value
    return finite_number(value, "style weight")


def _layer_weights_value(value):
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        if value != "balanced":
            raise OptionError(f"style_layer_weights must be numbers, a mapping, None or 'balanced', got {value!r}")
        return value
    return tuple(value)


def _layers(what: str) -> Callable:
    def check(value):
        layers = check_layers(value, what)
        if len(set(layers)) != len(layers):
            raise OptionError(f"a layer is listed twice in the {what}s: {list(layers)}")
        return layers

    return check


def _boolean(what: str) -> Callable:
    def check(value):
        if not isinstance(value, bool):
            raise OptionError(f"{what} must be True or False, got {value!r}")
        return value

    return check


def _convolutions(value):
    strategy_name(value)  # checked; "auto" stays "auto" (the backend decides when the run is prepared)
    return value


def option(default, help: str, *, parse: Callable | None = None, choices: tuple | None = None,
           metavar: str | None = None, flag: bool = True, nargs: str | None = None,
           check: Callable | None = None):  # fmt: skip
    """A field of ``Options``: its default, what the command line and the README say of it,
    and how its value is checked.

    ``parse`` turns the flag's text into the value (None: a switch, for booleans);
    ``choices`` are the command line's choices; ``check`` returns the value clean or raises
    an OptionError (``Options.checked``); ``flag=False`` keeps the option out of the
    command line (Python only)."""
    metadata = dict(help=help, parse=parse, choices=choices, metavar=metavar, flag=flag, nargs=nargs, check=check)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Options:
    """The options of one stylization (see ``stylize``); every item of a batch shares them."""

    size: int = option(512, "the output's longer side in px", parse=int,
                       check=_whole("size (the output's longer side in px)", 1))
    iterations: int = option(500, "optimizer iterations (at each scale): the most a run takes; tolerance may end it sooner",
                             parse=int, check=_whole("iterations", 0))
    optimizer: Any = option("lbfgs", "lbfgs or adam (from Python also any optax.GradientTransformation)",
                            parse=str, choices=("lbfgs", "adam"), check=check_optimizer_name)  # fmt: skip
    learning_rate: float = option(0.02, "Adam's step size, pixels in [0, 1]", parse=float,
                                  check=check_learning_rate)  # fmt: skip
    linesearch: str = option("zoom", "L-BFGS's line search: zoom (strong Wolfe) or backtracking (Armijo)",
                             parse=str, choices=("zoom", "backtracking"), check=check_linesearch)  # fmt: skip
    content_weight: float = option(1.15, "α, the content term's weight", parse=float, check=_number("content weight"))
    style_weight: Any = option("auto", "β, or auto: 1000 at 512×512, scaled with the output's pixel count",
                               parse=_style_weight, check=_style_weight_value)  # fmt: skip
    tv_weight: float = option(1e6, "γ, the total-variation term's weight (it sums over pixels as the content term "
                              "does: the same at every size)", parse=float, check=_number("tv weight"))  # fmt: skip
    content_layers: tuple = option(("relu4_2",), "comma-separated VGG-19 layers of the content term", parse=_layer_list,
                                   check=_layers("content layer"))  # fmt: skip
    style_layers: tuple = option(DEFAULT_STYLE_LAYERS, "comma-separated VGG-19 layers of the style term", parse=_layer_list,
                                 check=_layers("style layer"))  # fmt: skip
    style_layer_weights: Any = option(None, "one per style layer (default 1/L each), or balanced: every layer "
                                      "counts alike at the start", parse=_layer_weights,
                                      check=_layer_weights_value)  # fmt: skip
    pooling: str = option("max", "VGG-19's pooling: max (as trained) or avg (the paper's)", parse=str,
                          choices=("max", "avg"), check=check_pooling)  # fmt: skip
    init: Any = option("content", "content, noise, style, or an image", parse=str)
    seed: int = option(0, "seed of the noise init", parse=int, check=_whole("seed", 0))
    style_blend_weights: Any = option(None, "one per style image when they blend (default equal)", parse=_float_list)
    preserve_color: Any = option(None, "keep the content's colours: luminance, histogram or swap", parse=str,
                                 choices=COLOR_CHOICES,
                                 check=_one_of("preserve_color", COLOR_CHOICES))  # fmt: skip
    style_scale: float = option(1.0, "the style images' size relative to the output", parse=float,
                                check=_number("style scale", positive=True))  # fmt: skip
    masks: Any = option(None, "one greyscale region mask per style image (white: where it paints)", parse=str,
                        metavar="MASK", nargs="+")  # fmt: skip
    style_loss: str = option("gram", "gram (the paper) or sliced_wasserstein (whole feature distributions)",
                             parse=str, choices=("gram", "sliced_wasserstein"),
                             check=check_style_loss)  # fmt: skip
    tolerance: float = option(2e-3, "stop early once the loss falls by less than this fraction over a chunk of "
                              "iterations (0: run them all)", parse=float, metavar="T", check=check_tolerance)  # fmt: skip
    average_decay: float = option(0.0, "return the moving average of the iterates with this decay in [0, 1)",
                                  parse=float, metavar="D", check=check_average_decay)  # fmt: skip
    remat: bool = option(False, "recompute each VGG block in the backward pass (less memory, more time)",
                         check=_boolean("remat"))  # fmt: skip
    compute_dtype: str = option("float32", "float32, or bfloat16: VGG in bfloat16 (losses stay float32)", parse=str,
                                choices=("float32", "bfloat16"), check=check_compute_dtype)  # fmt: skip
    convolutions: str = option("auto", "how VGG-19 is computed: auto (the CPU's fast paths on a CPU backend), "
                               "plain (XLA's own) or cpu", parse=str, choices=CONVOLUTIONS, check=_convolutions)  # fmt: skip
    spatial_parts: int = option(1, "split each image's rows over this many devices (memory per device for large "
                                "images; XLA partitions the network)", parse=int, metavar="P",
                                check=_whole("spatial_parts", 1))  # fmt: skip
    scales: int = option(1, "coarse to fine: this many sizes ×√2 apart, ending at size", parse=int, metavar="N",
                         check=_whole("scales", 1))  # fmt: skip
    weights: Any = option(None, "a converted VGG-19 weights file (default: JAXSTYLE_WEIGHTS, the cache, or fetch)",
                          parse=str)  # fmt: skip
    extra_terms: tuple = option((), "loss terms of your own, added to the objective (Python only; see "
                                "examples/custom_term.py)", flag=False, check=check_extra_terms)  # fmt: skip

    def replace(self, **changes) -> "Options":
        """A copy with ``changes``; an unknown name is an OptionError naming the known ones."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            raise OptionError(f"unknown option(s) {unknown}; the options are: {', '.join(NAMES)}")
        return dataclasses.replace(self, **changes)

    def checked(self) -> "Options":
        """These options with every value checked and made clean (tuples for lists, floats
        for numbers), or a one-line OptionError naming the option and what it accepts.
        Images (init, masks, styles) are checked when they are read."""
        clean = {}
        for f in FIELDS:
            check = f.metadata["check"]
            clean[f.name] = getattr(self, f.name) if check is None else check(getattr(self, f.name))
        if not clean["content_layers"] and not clean["style_layers"]:
            raise OptionError("give at least one content or style layer")
        if clean["masks"] is not None and clean["style_blend_weights"] is not None:
            raise OptionError("give region masks or style blend weights, not both: with masks each style paints its region")
        if clean["spatial_parts"] > 1 and clean["convolutions"] == "cpu":
            raise OptionError("the CPU fast paths (convolutions='cpu') do not split over devices; with spatial_parts "
                              "use convolutions='auto' or 'plain'")  # fmt: skip
        if clean["masks"] is not None and clean["style_layers"] and clean["style_loss"] != "gram":
            raise OptionError("region masks work with the Gram style loss only")
        return dataclasses.replace(self, **clean)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in FIELDS}


FIELDS = dataclasses.fields(Options)
NAMES = tuple(f.name for f in FIELDS)
DEFAULTS = Options()

#: Named option sets, each the defaults with a few fields replaced; options given
#: explicitly override them (``resolve``).
PRESETS: Mapping[str, Options] = {
    # Gatys, Ecker & Bethge (2016): white-noise init, L-BFGS, average pooling, w_l = 1/5.
    # The paper has no TV term and runs every iteration; α = 1 with β auto is its α/β = 1e-3.
    "paper": dataclasses.replace(DEFAULTS, init="noise", optimizer="lbfgs", pooling="avg", iterations=500,
                                 tv_weight=0.0, content_weight=1.0, tolerance=0.0),
    # Adam from the content image: cheaper iterations, fewer of them; all of them (Adam's loss
    # may rise over a chunk, which the tolerance would take for convergence).
    "fast": dataclasses.replace(DEFAULTS, init="content", optimizer="adam", learning_rate=0.02, iterations=200,
                                tolerance=0.0),
    # Coarse to fine over three sizes (×√2 apart): the painting's large-scale structure;
    # every style layer counting alike (with its own auto β); the iterates averaged.
    # Its weights were chosen by eye before the defaults had TV and early stopping: kept so.
    "hq": dataclasses.replace(DEFAULTS, init="content", optimizer="lbfgs", scales=3, iterations=150,
                              style_layer_weights="balanced", average_decay=0.9, tv_weight=0.0, content_weight=1.0,
                              tolerance=0.0),
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


def option_docs(indent: str = "    ") -> str:
    """The options as docstring lines, made from the fields (``stylize``'s docstring ends with them)."""
    lines = [f"{indent}- ``{f.name}`` (default ``{f.default!r}``): {f.metadata['help']}" for f in FIELDS]
    return "\n" + "\n".join(lines) + "\n"


def _shown(value) -> str:
    if value is None or value == ():
        return "—"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def option_table() -> str:
    """The README's table of options (Markdown), made from the fields."""
    rows = ["| option (`--flag`) | default | what |", "| --- | --- | --- |"]
    for f in FIELDS:
        flag = f" (`{flag_name(f.name)}`)" if f.metadata["flag"] else ""
        rows.append(f"| `{f.name}`{flag} | `{_shown(f.default)}` | {f.metadata['help']} |")
    return "\n".join(rows)


def preset_help() -> str:
    """The CLI's --preset help: each preset as the flags it sets, where it differs from the defaults."""
    sets = {
        name: " ".join(f"{flag_name(f.name)} {_shown(getattr(preset, f.name))}"
                       for f in FIELDS if getattr(preset, f.name) != getattr(DEFAULTS, f.name))
        for name, preset in PRESETS.items()
    }  # fmt: skip
    return "; ".join(f"{name}: {flags}" for name, flags in sets.items()) + " (flags you give win)"
