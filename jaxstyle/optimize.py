"""Minimise image objectives with optax and a batched L-BFGS, the loop running inside XLA.

Every run is a batch: K images, each minimising its own objective (K = 1 for one
stylization). The loop is compiled once per (objective, image shape, batch size,
optimizer settings) and run in chunks: a ``lax.while_loop`` inside one jitted call per
chunk, so the host only wakes up between chunks (for the progress callback), never per
iteration. Each iteration evaluates the K objectives in one batched call (vmap):

- ``"lbfgs"``: ``jaxstyle.lbfgs``, whose line search is written for batches (every
  trial one batched evaluation, per-member step sizes and acceptance);
- ``"adam"``, or any ``optax.GradientTransformation`` given as the optimizer: its update
  vmapped over the members. A transformation whose state keeps the value and gradient
  (optax's own L-BFGS, say) is given them (``value=``, ``grad=``, ``value_fn=``), and the
  loop reads them from its state instead of evaluating again.

Pixels stay in [0, 1]: after every step the image is projected back into the box,
and the objective sees it through ``box`` (below), whose gradient drops only the
components that would push a pixel further outside. Value and gradient then depend
on the projected image alone, so L-BFGS's cached line-search value and gradient stay
exact after the projection and no iteration needs an extra evaluation.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import lbfgs
from .checks import finite_number, whole_number
from .errors import OptionError

OPTIMIZERS = ("lbfgs", "adam")
LINESEARCHES = ("zoom", "backtracking")


class OptimizerConfig(NamedTuple):
    """Optimizer settings; static (hashable) so that they select a compiled program.

    ``name``: "lbfgs", "adam", or an ``optax.GradientTransformation`` of your own (e.g.
    ``optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.02))``), applied to each
    image of a batch on its own; its updates are added to the image, then clipped.
    ``learning_rate``: Adam's step size in pixel units (image in [0, 1]); L-BFGS
    ignores it (its line search picks the step).
    ``memory_size``: how many past steps L-BFGS remembers.
    ``max_linesearch_steps``: the most evaluations one L-BFGS line search may make.
    ``linesearch``: "zoom" (strong Wolfe conditions, the default) or "backtracking"
    (Armijo only).
    ``average_decay``: d in [0, 1); the result is the exponential moving average of
    the iterates (see ``IterateAverage``); 0 (the default) returns the last iterate.
    ``tolerance``: a member stops (converged) after a chunk over which its loss fell by
    less than this fraction of the chunk's first loss; 0 runs every iteration. Decided on
    the host between chunks, so it is not part of the compiled program.
    """

    name: Any = "lbfgs"
    learning_rate: float = 0.02
    memory_size: int = 20
    max_linesearch_steps: int = 20
    linesearch: str = "zoom"
    average_decay: float = 0.0
    tolerance: float = 0.0


def check_optimizer_name(name):
    """"lbfgs", "adam" or an optax transformation; else an OptionError."""
    if isinstance(name, optax.GradientTransformation) or (isinstance(name, str) and name in OPTIMIZERS):
        return name
    raise OptionError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} or give an optax.GradientTransformation")


def check_linesearch(name) -> str:
    if name not in LINESEARCHES:
        raise OptionError(f"unknown line search {name!r}; choose one of {', '.join(LINESEARCHES)}")
    return name


def check_average_decay(value) -> float:
    decay = finite_number(value, "average decay")
    if decay >= 1:
        raise OptionError(f"average decay must be in [0, 1), got {decay}")
    return decay


def check_learning_rate(value) -> float:
    return finite_number(value, "learning rate", positive=True)


def check_tolerance(value) -> float:
    tolerance = finite_number(value, "tolerance")
    if tolerance >= 1:
        raise OptionError(f"tolerance must be in [0, 1) (a fraction of the loss), got {tolerance}")
    return tolerance


def check_optimizer(config: OptimizerConfig) -> OptimizerConfig:
    """The settings checked (each by the check ``jaxstyle.config.Options`` uses too)."""
    return config._replace(
        name=check_optimizer_name(config.name),
        linesearch=check_linesearch(config.linesearch),
        average_decay=check_average_decay(config.average_decay),
        learning_rate=check_learning_rate(config.learning_rate),
        tolerance=check_tolerance(config.tolerance),
        memory_size=whole_number(config.memory_size, "L-BFGS memory size", minimum=1),
        max_linesearch_steps=whole_number(config.max_linesearch_steps, "L-BFGS line-search steps", minimum=1),
    )


def optax_transformation(config: OptimizerConfig) -> optax.GradientTransformation | None:
    """The optax transformation each member runs; None for jaxstyle's batched L-BFGS."""
    if isinstance(config.name, optax.GradientTransformation):
        return config.name
    if config.name == "adam":
        return optax.adam(config.learning_rate)
    return None


@jax.custom_vjp
def box(x: jax.Array) -> jax.Array:
    """clip(x, 0, 1), whose gradient keeps pixels free to move back inside.

    Backward pass: g_i is zeroed where pixel i sits on a bound and a descent step
    (−g_i) would push it further out; elsewhere g passes unchanged.
    """
    return jnp.clip(x, 0.0, 1.0)


def _box_fwd(x):
    z = jnp.clip(x, 0.0, 1.0)
    return z, z


def _box_bwd(z, g):
    pushes_out = ((z >= 1.0) & (g < 0)) | ((z <= 0.0) & (g > 0))
    return (jnp.where(pushes_out, jnp.zeros_like(g), g),)


box.defvjp(_box_fwd, _box_bwd)


class IterateAverage(NamedTuple):
    """An exponential moving average of the iterates x_1, x_2, … with bias correction::

        total_t = d · total_{t−1} + (1 − d) · x_t      weight_t = d · weight_{t−1} + (1 − d) = 1 − d^t
        average_t = total_t / weight_t   (the image itself until the first step)

    With d = 0 the average is the last iterate, exactly. Averaging damps the
    iterate-to-iterate noise that Adam's fixed step leaves in the pixels.
    """

    total: jax.Array  # (K, H, W, 3)
    weight: jax.Array  # (K,)


class IterateAveraging(NamedTuple):
    """Averaging as a pair of pure functions, in optax's manner: ``init(images)`` gives the
    empty ``IterateAverage``, ``update(average, images)`` takes in the next iterates, and
    ``result(average, images)`` is what the run returns (the images before any step)."""

    decay: float = 0.0

    def init(self, images: jax.Array) -> IterateAverage:
        return IterateAverage(jnp.zeros_like(images), jnp.zeros(images.shape[:1], jnp.float32))

    def update(self, average: IterateAverage, images: jax.Array) -> IterateAverage:
        d = jnp.float32(self.decay)
        return IterateAverage(d * average.total + (1 - d) * images, d * average.weight + (1 - d))

    @staticmethod
    def result(average: IterateAverage, images: jax.Array) -> jax.Array:
        w = average.weight.reshape(average.weight.shape + (1,) * (average.total.ndim - average.weight.ndim))
        return jnp.where(w > 0, average.total / jnp.where(w > 0, w, 1.0), images)


class RunState(NamedTuple):
    """Everything the loop carries, for a batch of K images: the images (in [0, 1]), the
    optimizer state, and the running average of the iterates (what the run returns)."""

    image: jax.Array  # (K, H, W, 3)
    opt_state: Any
    average: IterateAverage
    running: jax.Array  # (K,) bool: False once a member has converged (``OptimizerConfig.tolerance``)

    @property
    def result(self) -> jax.Array:
        """The images the run gives: the iterate averages (the images before any step)."""
        return IterateAveraging.result(self.average, self.image)


def init_state(images: jax.Array, config: OptimizerConfig) -> RunState:
    """The state before the first step, for images (K, H, W, 3); one (H, W, 3) image is a batch of one."""
    images = jnp.clip(jnp.asarray(images, jnp.float32), 0.0, 1.0)
    if images.ndim == 3:
        images = images[None]
    average = IterateAveraging(config.average_decay).init(images)
    transformation = optax_transformation(config)
    if transformation is None:
        opt_state = lbfgs.init(images, config.memory_size)
    else:
        opt_state = jax.vmap(transformation.init)(images)
    # The optimizer state may hold the images' own buffer; the loop donates its
    # state, and one buffer cannot be donated twice, so give every leaf its own.
    running = jnp.ones(images.shape[:1], bool)
    return jax.tree.map(jnp.copy, RunState(images, opt_state, average, running))


def _held_value_and_grad(opt_state):
    """(value, grad) that an optax state keeps (its line search's), or None."""
    try:
        value, grad = optax.tree.get(opt_state, "value"), optax.tree.get(opt_state, "grad")
    except KeyError:  # several leaves of that name: not a state that keeps one value
        return None
    return None if value is None or grad is None else (value, grad)


def _with_value_and_grad(batch_value_and_grad, config: OptimizerConfig, state: RunState) -> RunState:
    """Before a chunk: put the value and gradient at the images into an optimizer state that
    keeps them, where it does not yet (after ``init_state`` or a restore). One batched
    evaluation, only then: the ``lax.cond`` is on the batch as a whole, not under vmap."""
    if optax_transformation(config) is None:
        return state._replace(opt_state=lbfgs.with_value_and_grad(batch_value_and_grad, state.image, state.opt_state))
    held = _held_value_and_grad(state.opt_state)
    if held is None:
        return state
    held_value, held_grad = held
    missing = jnp.any(~jnp.isfinite(held_value))
    value, grad = jax.lax.cond(missing, lambda _: batch_value_and_grad(state.image), lambda _: (held_value, held_grad), None)
    return state._replace(opt_state=optax.tree.set(state.opt_state, value=value.astype(held_value.dtype), grad=grad))


def _step(batch_value_and_grad, member_fns, config: OptimizerConfig, state: RunState, active):
    """One iteration of every active member; returns (new state, values at the iterates it started from)."""
    x = state.image
    transformation = optax_transformation(config)
    if transformation is None:  # the value and gradient at x are in the state (``_with_value_and_grad``)
        value = state.opt_state.value
        new_x, opt_state = lbfgs.step(
            batch_value_and_grad, x, state.opt_state, active, memory_size=config.memory_size,
            max_linesearch_steps=config.max_linesearch_steps, zoom=config.linesearch == "zoom",
            project=lambda y: jnp.clip(y, 0.0, 1.0),
        )  # fmt: skip
    else:
        # The state keeps them (a line search, filled by ``_with_value_and_grad``), or evaluate.
        value, grad = _held_value_and_grad(state.opt_state) or batch_value_and_grad(x)

        def update(grad, opt_state, x, value, fn):
            if isinstance(transformation, optax.GradientTransformationExtraArgs):
                return transformation.update(grad, opt_state, x, value=value, grad=grad, value_fn=fn)
            return transformation.update(grad, opt_state, x)

        updates, opt_state = member_fns(update)(grad, state.opt_state, x, value)
        new_x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
    average = IterateAveraging(config.average_decay).update(state.average, new_x)
    return RunState(new_x, opt_state, average, state.running), value.astype(jnp.float32)


class ChunkResult(NamedTuple):
    """What one compiled chunk returns besides the state, per member."""

    losses: jax.Array  # (K, chunk_size): losses[k, i], loss at the start of iteration i; NaN where not run
    last_finite: jax.Array  # (K, H, W, 3): the result (iterate average) up to the last iterate whose loss was finite
    ran: jax.Array  # (K,) iterations run: n, or fewer if the loss stopped being finite


def _where(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


@functools.partial(jax.jit, static_argnames=("loss_fn", "config", "chunk_size"), donate_argnames=("state",))
def run_chunk(state: RunState, n: jax.Array, shared_args: Any, member_args: Any, *, loss_fn, config, chunk_size: int):
    """Run up to ``n`` (≤ chunk_size, traced: no recompile) iterations of every member.

    Member k minimises ``loss_fn(image_k, *shared_args, *member_args_k)`` (``member_args``:
    leaves with a leading axis K). A member stops early, inside XLA, at the first
    iteration whose loss is NaN or infinite or whose step would make a pixel so; that
    step is not taken, and the others go on. Returns (state, ChunkResult).
    """

    def member_loss(x, args):
        return loss_fn(box(x), *shared_args, *args)

    def batch_value_and_grad(x):  # every member in one call
        return jax.vmap(jax.value_and_grad(member_loss))(x, member_args)

    def member_fns(update):  # an optax update per member, with that member's objective
        def one(grad, opt_state, x, value, args):
            return update(grad, opt_state, x, value, lambda y: member_loss(y, args))

        return lambda grad, opt_state, x, value: jax.vmap(one)(grad, opt_state, x, value, member_args)

    k = state.image.shape[0]

    def keep_going(carry):
        i, _, _, _, finite = carry
        return jnp.any((i < n) & finite)

    def body(carry):
        i, old, losses, last_finite, finite = carry
        active = (i < n) & finite
        new, value = _step(batch_value_and_grad, member_fns, config, old, active)
        loss_finite = jnp.isfinite(value)
        ok = loss_finite & jnp.all(jnp.isfinite(new.image), axis=(1, 2, 3))
        # A bad step is not taken: that member's state stays as it was, and it stops.
        taken = active & ok
        state = _where(taken, new, old)
        last_finite = jnp.where((active & loss_finite)[:, None, None, None], old.result, last_finite)
        losses = jnp.where(active[:, None] & (jnp.arange(chunk_size) == i[:, None]), value[:, None], losses)
        return i + taken.astype(i.dtype), state, losses, last_finite, finite & (ok | ~active)

    state = _with_value_and_grad(batch_value_and_grad, config, state)
    losses = jnp.full((k, chunk_size), jnp.nan, jnp.float32)
    init = (jnp.zeros((k,), jnp.int32), state, losses, state.result, state.running)  # converged members sit out
    ran, state, losses, last_finite, _ = jax.lax.while_loop(keep_going, body, init)
    return state, ChunkResult(losses, last_finite, ran)


class NonFiniteLossWarning(RuntimeWarning):
    """The loss became NaN or infinite; the run stopped at the last finite image."""


class Progress(NamedTuple):
    """What a progress callback receives between chunks.

    ``images`` and ``state`` live on the device and are valid during the call only: the
    next chunk reuses their buffers, so copy what you keep (``np.asarray``).
    """

    iteration: int  # iterations done so far
    iterations: int  # iterations asked for
    losses: np.ndarray  # (K,) each member's loss at the start of its last iteration run
    images: jax.Array  # (K, H, W, 3): the results so far (iterate averages; ``RunState.result``), in [0, 1]
    state: RunState  # images, optimizer state and averages: what a checkpoint keeps

    @property
    def converged(self) -> np.ndarray:
        """(K,) bool: the members that have stopped by ``OptimizerConfig.tolerance``."""
        return ~np.asarray(self.state.running)

    @property
    def loss(self) -> float:
        """The loss of a run of one image (the largest member's, for a batch)."""
        return float(np.nanmax(self.losses)) if np.any(np.isfinite(self.losses)) else float("nan")

    @property
    def image(self) -> jax.Array:
        """The first (for a run of one image, the only) member's result, H×W×3."""
        return self.images[0]


@functools.partial(jax.jit, static_argnums=0)
def _prepare(loss_fn, shared_args):
    return loss_fn.prepare(*shared_args)


def minimize_batch(
    loss_fn: Callable[..., jax.Array],
    shared_args: Any,
    member_args: Any,
    images: jax.Array,
    iterations: int,
    config: OptimizerConfig = OptimizerConfig(),
    *,
    chunk_size: int = 10,
    callback: Callable[[Progress], None] | None = None,
    resume: tuple[RunState, int] | None = None,
    to_host: Callable[[jax.Array], np.ndarray] = np.asarray,
) -> tuple[jax.Array, list[list[float]], list[int]]:
    """Minimise ``loss_fn(image_k, *shared_args, *member_args_k)`` over images (K, H, W, 3) in [0, 1].

    ``loss_fn`` must be hashable (a module-level function, or a NamedTuple of such) so that
    the compiled loop is reused across calls. ``resume=(state, done)`` continues a run from
    a saved ``RunState`` after ``done`` iterations (``images`` then only give the shape).
    ``resume``'s state may already be on its devices (sharded). ``to_host`` reads
    the few per-chunk numbers the loop decides by (a multi-process run gathers them from
    every process, ``jaxstyle.processes.gathered``, so that all decide alike). A ``loss_fn``
    with a ``prepare`` method gets ``loss_fn.prepare(*shared_args)`` (computed once, before
    the first chunk) in place of ``shared_args``: the objective's precomputations (the
    convolution strategy's kernels) without putting them into the caller's params.
    Returns the final images (the iterate averages if ``config.average_decay`` > 0), each
    member's losses, and the members that stopped on a non-finite loss (they keep the last
    result whose loss was finite; a ``NonFiniteLossWarning`` says so). With
    ``config.tolerance`` > 0 a member that has converged stops moving (its history ends
    there) and the run ends when every member has.
    """
    config = check_optimizer(config)
    if iterations < 0:
        raise OptionError(f"iterations must be ≥ 0, got {iterations}")
    if chunk_size < 1:
        raise OptionError(f"chunk size must be ≥ 1, got {chunk_size}")
    state, done = resume if resume is not None else (init_state(images, config), 0)
    if hasattr(loss_fn, "prepare"):  # what the objective computes from its shared arguments once per run
        shared_args = _prepare(loss_fn, shared_args)
    count = state.image.shape[0]
    history: list[list[float]] = [[] for _ in range(count)]
    stopped: dict[int, np.ndarray] = {}
    running = np.array(to_host(state.running), bool)  # the device's mask on the host; a resumed run's converged members stay so
    program = config._replace(tolerance=0.0)  # decided here, between chunks: not part of the compiled loop
    while done < iterations and any(running[k] and k not in stopped for k in range(count)):
        # Chunks end on multiples of chunk_size, a resumed run's too: callbacks come at the same points.
        n = min(chunk_size - done % chunk_size, iterations - done)
        state, result = run_chunk(
            state, jnp.int32(n), shared_args, member_args, loss_fn=loss_fn, config=program, chunk_size=chunk_size
        )
        ran, losses = to_host(result.ran), to_host(result.losses)
        nan_stop = any(ran[k] < n and running[k] and k not in stopped for k in range(count))
        last_finite = to_host(result.last_finite) if nan_stop else None  # every process asks, or none
        converged = np.zeros(count, bool)
        for k in range(count):
            if k in stopped or not running[k]:
                continue
            history[k].extend(float(v) for v in losses[k, : ran[k]])
            if ran[k] < n:
                stopped[k] = last_finite[k]
                bad = float(losses[k, ran[k]])
                warnings.warn(
                    f"the loss or its gradient became NaN or infinite at iteration {done + ran[k] + 1} "
                    f"(loss {bad:.4g}){f' for batch item {k}' if count > 1 else ''}; stopped there and "
                    "kept the last image with a finite loss: lower the learning rate or the loss weights",
                    NonFiniteLossWarning,
                    stacklevel=2,
                )
            elif config.tolerance > 0 and n >= 2:
                first, last = float(losses[k, 0]), float(losses[k, n - 1])
                converged[k] = first - last <= config.tolerance * abs(first)
        if len(stopped) == count:
            break
        done += n
        if converged.any():
            running &= ~converged
            mask = running.copy()
            state = state._replace(running=jax.make_array_from_callback(mask.shape, state.running.sharding, lambda i: mask[i]))
        if callback is not None:
            last = np.array([h[-1] if h else np.nan for h in history], np.float32)
            callback(Progress(done, iterations, last, state.result, state))
    final = state.result
    if stopped:
        final = np.array(to_host(final))
        for k, image in stopped.items():
            final[k] = image
    return final, history, sorted(stopped)


def minimize(
    loss_fn: Callable[..., jax.Array],
    loss_args: Any,
    image: jax.Array,
    iterations: int,
    config: OptimizerConfig = OptimizerConfig(),
    *,
    chunk_size: int = 10,
    callback: Callable[[Progress], None] | None = None,
    resume: tuple[RunState, int] | None = None,
) -> tuple[jax.Array, list[float]]:
    """``minimize_batch`` for one (H, W, 3) image: minimise ``loss_fn(image, *loss_args)``.

    Returns the final image and the losses of the iterations run. If the loss becomes
    NaN or infinite, the run stops, a ``NonFiniteLossWarning`` is issued, and the last
    image whose loss was finite is returned.
    """
    images, history, _ = minimize_batch(loss_fn, loss_args, (), jnp.asarray(image)[None], iterations, config,
                                        chunk_size=chunk_size, callback=callback, resume=resume)  # fmt: skip
    return images[0], history[0]
