"""The ``jaxstyle`` command: ``jaxstyle stylize ...``, ``jaxstyle serve`` and ``jaxstyle weights fetch|info``."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import JaxstyleError, OptionError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other jaxstyle error."""

    def error(self, message: str):
        self.exit(2, f"jaxstyle: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import config

    parser = _Parser(prog="jaxstyle", description="Neural style transfer in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("stylize", help="paint a content image in the style of another")
    p.add_argument("content", help="content image (photo)")
    p.add_argument("styles", nargs="+", metavar="STYLE",
                   help="style image (painting); several are blended, or with --batch each gets its own output")
    p.add_argument("-o", "--output", required=True,
                   help="output image path (.png, .jpg, ...); with --batch and several styles, a pattern with {style} or {index}")
    p.add_argument("--batch", action="store_true",
                   help="one output per style, all computed as one vmapped program over the available devices")
    p.add_argument("--preset", choices=tuple(config.PRESETS), default=None,
                   help=config.preset_help())
    config.add_flags(p)  # every option of stylize, from jaxstyle.config.Options
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="also save the image every N iterations as OUT_<iteration>.png")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="keep the images and optimizer state here every --checkpoint-every iterations")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="(default %(default)s)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run saved in this checkpoint (same images and options; may raise --iterations)")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="use the first N of JAX's devices (default: all): the batch and --spatial-parts split over them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    m = p.add_argument_group("many processes, one run (every process runs the same command; see the README)")
    m.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address (the same on every process), or auto: JAX finds the run itself "
                        "(Cloud TPU VMs, SLURM, Open MPI)")
    m.add_argument("--num-processes", type=int, default=None, metavar="N", help="how many processes run this command")
    m.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's number, 0 to N-1")
    m.add_argument("--coordinator-timeout", type=float, default=120, metavar="S",
                   help="give up joining the run after this many seconds (default %(default)s)")

    s = commands.add_parser("serve", help="a local web page: drop images, watch the picture form, download it "
                                          "(needs the web extra: pip install -e '.[web]')")  # fmt: skip
    s.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default %(default)s: this machine only; 0.0.0.0 opens it to the network)")
    s.add_argument("--port", type=int, default=7860, help="(default %(default)s)")
    s.add_argument("--weights", default=None, help="a converted VGG-19 weights file (default: JAXSTYLE_WEIGHTS, the cache, or fetch)")
    s.add_argument("--open", action="store_true", help="open the page in the browser")

    w = commands.add_parser("weights", help="obtain or inspect the VGG-19 weights")
    wc = w.add_subparsers(dest="weights_command", required=True)
    f = wc.add_parser("fetch", help="download, check, convert and cache the VGG-19 weights")
    f.add_argument("--force", action="store_true", help="fetch again even if the cache has them")
    i = wc.add_parser("info", help="describe a weights file (default: the one jaxstyle would use)")
    i.add_argument("path", nargs="?", default=None)
    return parser


@contextlib.contextmanager
def _compilation_cache():
    """JAX's persistent compilation cache in jaxstyle's cache directory, for one command:
    a second run of the same size starts without recompiling. The previous settings
    come back afterwards (a caller's own cache directory is left as it is)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from .weights import cache_dir

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    if before["jax_compilation_cache_dir"] is not None:
        yield
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


def _inputs(args) -> tuple[str, ...]:
    """Every file the run reads: none of them may be written."""
    from .config import INITS

    files = [args.content, *args.styles, *(args.masks or ()), args.weights, args.resume]
    if args.init not in INITS:
        files.append(args.init)
    return tuple(f for f in files if f is not None)


def _check_checkpoint_path(checkpoint: str, resume: str | None, files) -> None:
    """The checkpoint may be none of the inputs and outputs, except the checkpoint a
    run resumes from (which it goes on writing)."""
    from .images import same_file

    for f in files:
        if same_file(Path(checkpoint), Path(f)) and not (resume and same_file(Path(f), Path(resume))):
            raise OptionError(f"checkpoint {checkpoint} is an input or an output of the run; choose another path")


def _stylize(args) -> int:
    """One pipeline for one output and for --batch: a problem of K items (K = 1 without --batch)."""
    import jax

    from .api import prepare_batch, solve
    from .checkpoint import checkpoint_start_images, problem_fingerprint, read_checkpoint, save_checkpoint
    from .images import check_output_path, save_image, to_pil
    from .processes import batch_share

    if args.save_every < 0:
        raise OptionError(f"--save-every must be ≥ 0, got {args.save_every}")
    if args.checkpoint_every < 1:
        raise OptionError(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    inputs = _inputs(args)
    if args.batch:  # each style its own item and output
        if args.style_blend_weights is not None:
            raise OptionError("--style-blend-weights blends the styles into one output; with --batch each style has its own")
        styles, outputs = list(args.styles), _batch_outputs(args.output, args.styles)
        masks = None if args.masks is None else [[m] for m in args.masks]  # one region per item's style
        if masks is not None and len(masks) != len(styles):
            raise OptionError(f"{len(masks)} masks for {len(styles)} styles; with --batch give one mask per style")
    else:  # the styles blend into one output
        styles, outputs, masks = [list(args.styles)], [Path(args.output)], args.masks
    for output in outputs:
        check_output_path(output, inputs)  # refuse a bad output before minutes of work, not after
    checkpoint = args.checkpoint or args.resume  # a resumed run keeps its checkpoint going
    if checkpoint:
        _check_checkpoint_path(checkpoint, args.resume, (*inputs, *outputs))
    options = _options(args)
    options.update(masks=masks, style_blend_weights=args.style_blend_weights)
    devices = _devices(args.devices, args.spatial_parts)  # before any work: a layout that cannot be is refused now
    members, first = range(len(styles)), True  # the items this process computes (all, in one process)
    given_checkpoint = checkpoint
    share = batch_share(len(styles), devices, args.spatial_parts)
    if share is not None:
        members = share.members
        first = jax.process_index() == 0
        args.quiet = args.quiet or not first  # one progress bar, process 0's
        if checkpoint:  # each process keeps its own items' state
            checkpoint = _process_path(checkpoint)
            args.resume = args.resume and _process_path(args.resume)
    inits, resume = None, None
    if args.resume:
        resume = read_checkpoint(args.resume)  # once: its state may be large
        # The run goes on from the images its (finest) scale started from: they decide
        # the balanced layer weights, and the coarse scales that made them need not run again.
        inits = [None] * len(styles)
        for k, image in zip(members, checkpoint_start_images(resume)):
            inits[k] = image
    elif args.scales > 1:
        inits, options["weights"] = _coarse_scales(args, styles, options, devices)
    problem = prepare_batch(args.content, styles, inits=inits, devices=devices, **options)
    if not args.quiet:
        _describe(args, problem.init_images.shape, problem.terms)
    fingerprint = problem_fingerprint(problem) if checkpoint else None
    own = list(problem.indices)
    run = _Run(args, [outputs[k] for k in own], inputs, problem.finished)

    def progress(p):
        run.update(p.iteration, p.loss, p.images, p.converged)
        if args.save_every and p.iteration % args.save_every == 0 and p.iteration < p.iterations:
            for image, output in zip(problem.finished(run.latest), outputs):
                save_image(to_pil(image), output.with_name(f"{output.stem}_{p.iteration:04d}{output.suffix}"), inputs)
        due = p.iteration % args.checkpoint_every == 0 or p.iteration == p.iterations
        if checkpoint and (due or run.interrupt):  # the state is valid now, during the call
            save_checkpoint(checkpoint, p.state, p.iteration, fingerprint, start_images=problem.init_images)
        run.stop_if_asked()

    chunk = math.gcd(math.gcd(args.save_every, args.checkpoint_every if checkpoint else 0), 10) or 10
    # Every process of a multi-process run resumes with the name it was given (each finds its own file).
    hint = f" and checkpoint {checkpoint}; continue with --resume {given_checkpoint}" if checkpoint else ""
    def solve_own():  # this process's outputs (a multi-process run's others are None here)
        images = solve(problem, callback=progress, chunk_size=chunk, resume=resume, devices=devices)
        return [images[k] for k in own]

    return run(solve_own, hint)


def _process_path(path: str) -> str:
    """A multi-process run's file for this process: NAME.process-I-of-N.SUFFIX."""
    import jax

    p = Path(path)
    return str(p.with_name(f"{p.stem}.process-{jax.process_index()}-of-{jax.process_count()}{p.suffix}"))


def _devices(count: int | None, spatial_parts: int):
    """The first ``count`` of JAX's devices (all by default), checked against ``spatial_parts``."""
    import jax

    from .sharding import run_mesh

    available = jax.devices()
    if count is not None and jax.process_count() > 1:
        raise OptionError("--devices chooses among one process's devices; a multi-process run uses every process's: "
                          "leave it out (or limit each process's devices, e.g. CUDA_VISIBLE_DEVICES)")  # fmt: skip
    if count is not None and not 1 <= count <= len(available):
        raise OptionError(f"--devices {count}: there are {len(available)} devices; give 1 to {len(available)}")
    devices = available[: count or len(available)]
    run_mesh(devices, spatial_parts)
    return devices


class _Interrupted(Exception):
    """Ctrl-C, taken at the end of a chunk."""


class _Run:
    """What single and batch runs share: the progress bar, Ctrl-C between chunks (saving
    the latest images), NaN warnings as one line each, and the final saves."""

    def __init__(self, args, outputs: list[Path], inputs: tuple, finish):
        from tqdm import tqdm

        # ``finish(images)``: the images as the user gets them (every save goes through it).
        self.outputs, self.inputs, self.finish = outputs, inputs, finish
        self.bar = tqdm(total=args.iterations, disable=args.quiet, unit="it", dynamic_ncols=True)
        self.interrupt: list = []  # non-empty once Ctrl-C was pressed
        self.latest = None  # host copies of the images after the last chunk: what Ctrl-C saves
        self.iteration, self.iterations, self.converged = 0, args.iterations, False

    def update(self, iteration: int, loss: float, images, converged=()) -> None:
        """Keep host copies of ``images`` (the next chunk reuses their device buffers)."""
        self.iteration, self.latest = iteration, [np.asarray(image) for image in images]
        self.converged = bool(len(converged)) and bool(np.all(converged))
        self.bar.update(iteration - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4g}")

    def stop_if_asked(self) -> None:
        if self.interrupt:
            raise _Interrupted

    def __call__(self, solve_all, interrupted_hint: str = "") -> int:
        """``solve_all()`` returns one PIL image per output; save them, or the latest on Ctrl-C."""
        from .images import save_image, to_pil
        from .optimize import NonFiniteLossWarning

        try:
            with warnings.catch_warnings(record=True) as caught, _interrupt_between_chunks(self.interrupt):
                warnings.simplefilter("always", NonFiniteLossWarning)  # others keep their filters
                images = solve_all()
        except (_Interrupted, KeyboardInterrupt):
            self.bar.close()
            if self.latest is None:
                print("jaxstyle: interrupted before the first iterations finished; nothing saved", file=sys.stderr)
                return 130
            for image, output in zip(self.finish(self.latest), self.outputs):
                save_image(to_pil(image), output, self.inputs)
            saved = ", ".join(map(str, self.outputs))
            print(f"jaxstyle: interrupted at iteration {self.iteration}; saved {saved}{interrupted_hint}", file=sys.stderr)
            return 130
        finally:
            self.bar.close()
        for w in caught:
            if issubclass(w.category, NonFiniteLossWarning):
                print(f"jaxstyle: warning: {w.message}", file=sys.stderr)
            else:  # someone else's warning: passed on, for Python (and its filters) to show
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        if self.converged and self.iteration < self.iterations:
            print(f"converged at iteration {self.iteration} of {self.iterations} (the loss fell by less than "
                  "--tolerance over the last chunk)", file=sys.stderr)  # fmt: skip
        for image, output in zip(images, self.outputs):
            save_image(image, output, self.inputs)
            print(f"saved {output}", file=sys.stderr)
        return 0


@contextlib.contextmanager
def _interrupt_between_chunks(requested: list):
    """Turn the first Ctrl-C into a request that the progress callback acts on.

    A KeyboardInterrupt raised at an arbitrary point could land inside JAX's dispatch
    (with buffers half donated); a flag checked between chunks stops cleanly. A second
    Ctrl-C interrupts at once, as usual. ``requested`` gets an entry at the first.
    """

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _coarse_scales(args, styles, options, devices):
    from tqdm import tqdm

    from .api import coarse_to_fine_inits, scale_sizes

    sizes = scale_sizes(args.size, args.scales)
    if not args.quiet:
        print(f"coarse to fine: {' → '.join(f'{s} px' for s in sizes)}", file=sys.stderr)
    bar = tqdm(total=args.iterations, disable=args.quiet, unit="it", dynamic_ncols=True)

    def progress(p):
        if p.iteration < bar.n:  # the next scale began
            bar.reset()
        bar.update(p.iteration - bar.n)
        bar.set_postfix(loss=f"{p.loss:.4g}")

    try:
        return coarse_to_fine_inits(args.content, styles, scales=args.scales, callback=progress, devices=devices, **options)
    finally:
        bar.close()


def _options(args) -> dict:
    """The options of ``prepare_batch`` that the CLI sets (masks and blend weights: per item, in ``_stylize``)."""
    from .config import NAMES

    options = {name: getattr(args, name) for name in NAMES}
    del options["scales"], options["masks"], options["style_blend_weights"]
    return options


def _describe(args, shape, terms) -> None:
    h, w = shape[-3:-1]
    beta = np.unique(np.asarray(terms["style"].weight))
    print(f"{w}×{h} px, {args.optimizer}, α={float(np.max(terms['content'].weight)):.4g} "
          f"β={', '.join(f'{b:.4g}' for b in beta)}{' (auto)' if args.style_weight == 'auto' else ''} "
          f"γ={float(np.max(terms['tv'].weight)):.4g}", file=sys.stderr)  # fmt: skip


def _batch_outputs(pattern: str, styles: list[str]) -> list[Path]:
    if len(styles) > 1 and "{style}" not in pattern and "{index}" not in pattern:
        raise OptionError(f"with --batch and {len(styles)} styles, -o needs {{style}} or {{index}} in it, e.g. out_{{style}}.png")
    try:
        outputs = [Path(pattern.format(style=Path(s).stem, index=i)) for i, s in enumerate(styles)]
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise OptionError(f"-o {pattern!r}: only {{style}} and {{index}} may appear in braces ({type(e).__name__}: {e})") from None
    if len(set(outputs)) != len(outputs):
        raise OptionError(f"-o {pattern!r} gives two styles the same output name; use {{index}}")
    return outputs


def _weights(args) -> int:
    from .errors import WeightsError
    from .weights import cached_weights_path, describe_weights_file, locate_weights, read_weights_file

    if args.weights_command == "fetch":
        from .fetch import fetch_weights

        cached = cached_weights_path()
        if cached.is_file() and not args.force:
            try:
                read_weights_file(cached)
                print(f"VGG-19 weights already cached at {cached} (use --force to fetch again)")
                return 0
            except WeightsError as e:  # damaged: replaced below (the new file is checked before it lands)
                print(f"jaxstyle: the cached weights are damaged ({e}); fetching them again", file=sys.stderr)
        print(fetch_weights(cached))
        return 0
    print(describe_weights_file(locate_weights(args.path, fetch=False)))
    return 0


def _serve(args) -> int:
    from .errors import MissingExtraError

    try:
        from .serve import serve
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] == "jaxstyle":
            raise
        raise MissingExtraError(f"jaxstyle serve needs the web extra ({e.name} is missing): "
                                "pip install -e '.[web]' (or: pip install gradio)") from None  # fmt: skip
    with _compilation_cache():
        serve(host=args.host, port=args.port, weights=args.weights, open_browser=args.open)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "stylize":
        from . import config

        # The preset's options (or the defaults), with the flags given explicitly winning.
        for name, value in config.resolve(args.preset, **config.given(args)).as_dict().items():
            setattr(args, name, value)
    processes = False
    try:
        if args.command == "stylize":
            processes = _start_processes(args)
            with _compilation_cache():
                code = _stylize(args)
            if processes:
                from .processes import stop_processes

                # A finished run waits for the others' outputs; an interrupted one (Ctrl-C, 130)
                # leaves at once, or the others, held in a collective, would keep it at the barrier.
                stop_processes(timeout=300 if code == 0 else 0)
            return code
        if args.command == "serve":
            return _serve(args)
        return _weights(args)
    except JaxstyleError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        if processes:  # leave at once: the others see this process gone and stop (their watchdogs)
            from .processes import stop_processes

            stop_processes(timeout=0)
        return e.exit_code
    except KeyboardInterrupt:
        print("jaxstyle: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if processes:  # a collective broken off by a lost process: say that, in one line
            from .processes import end_if_a_process_was_lost

            end_if_a_process_was_lost()
        raise


def _start_processes(args) -> bool:
    """Join a multi-process run if the flags ask for one (before anything uses JAX)."""
    if args.coordinator is None:
        if args.num_processes is not None or args.process_id is not None:
            raise OptionError("--num-processes and --process-id need --coordinator HOST:PORT (process 0's address)")
        return False
    from .processes import start_processes

    start_processes(args.coordinator, args.num_processes, args.process_id, timeout=args.coordinator_timeout)
    return True


if __name__ == "__main__":
    sys.exit(main())
