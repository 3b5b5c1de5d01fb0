"""Minimise an image objective with optax, the iteration loop running inside XLA.

The loop is compiled once per (objective, image shape, optimizer settings) and run in
chunks: ``lax.fori_loop`` inside one jitted call per chunk, so the host only wakes up
between chunks (for the progress callback), never per iteration.

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
import optax

from .checks import finite_number, whole_number
from .errors import OptionError

OPTIMIZERS = ("lbfgs", "adam")
LINESEARCHES = ("zoom", "backtracking")


class OptimizerConfig(NamedTuple):
    """Optimizer settings; static (hashable) so that they select a compiled program.

    ``learning_rate``: Adam's step size in pixel units (image in [0, 1]); L-BFGS
    ignores it (its zoom line search picks the step).
    ``memory_size``: how many past steps L-BFGS remembers.
    ``max_linesearch_steps``: the most evaluations one L-BFGS line search may make.
    ``linesearch``: "zoom" (strong Wolfe conditions, the default) or "backtracking"
    (Armijo only; under vmap it costs fewer evaluations, see ``run_chunk_batched``).
    ``average_decay``: d in [0, 1); the result is the exponential moving average of
    the iterates (see ``IterateAverage``); 0 (the default) returns the last iterate.
    """

    name: str = "lbfgs"
    learning_rate: float = 0.02
    memory_size: int = 20
    max_linesearch_steps: int = 20
    linesearch: str = "zoom"
    average_decay: float = 0.0


def check_optimizer(config: OptimizerConfig) -> OptimizerConfig:
    if config.name not in OPTIMIZERS:
        raise OptionError(f"unknown optimizer {config.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if config.linesearch not in LINESEARCHES:
        raise OptionError(f"unknown line search {config.linesearch!r}; choose one of {', '.join(LINESEARCHES)}")
    decay = finite_number(config.average_decay, "average decay")
    if decay >= 1:
        raise OptionError(f"average decay must be in [0, 1), got {decay}")
    return config._replace(
        average_decay=decay,
        learning_rate=finite_number(config.learning_rate, "learning rate", positive=True),
        memory_size=whole_number(config.memory_size, "L-BFGS memory size", minimum=1),
        max_linesearch_steps=whole_number(config.max_linesearch_steps, "L-BFGS line-search steps", minimum=1),
    )


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformationExtraArgs:
    if config.name == "adam":
        return optax.adam(config.learning_rate)
    if config.linesearch == "backtracking":
        linesearch = optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=config.max_linesearch_steps, store_grad=True
        )
    else:
        linesearch = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=config.max_linesearch_steps, initial_guess_strategy="one"
        )
    return optax.lbfgs(memory_size=config.memory_size, linesearch=linesearch)


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

    total: jax.Array
    weight: jax.Array


class RunState(NamedTuple):
    """Everything the loop carries: the image (in [0, 1]), the optimizer state, and
    the running average of the iterates (what the run returns)."""

    image: jax.Array
    opt_state: Any
    average: IterateAverage

    @property
    def result(self) -> jax.Array:
        """The image the run gives: the iterate average (the image before any step)."""
        total = self.average.total
        w = self.average.weight.reshape(self.average.weight.shape + (1,) * (total.ndim - self.average.weight.ndim))
        return jnp.where(w > 0, total / jnp.where(w > 0, w, 1.0), self.image)  # (a batch's too)


def init_state(image: jax.Array, config: OptimizerConfig) -> RunState:
    image = jnp.clip(jnp.asarray(image, jnp.float32), 0.0, 1.0)
    average = IterateAverage(jnp.zeros_like(image), jnp.float32(0.0))
    state = RunState(image, make_optimizer(config).init(image), average)
    # The optimizer state may hold the image's own buffer; the loop donates its
    # state, and one buffer cannot be donated twice, so give every leaf its own.
    return jax.tree.map(jnp.copy, state)


def step(loss_fn: Callable[[jax.Array], jax.Array], config: OptimizerConfig, state: RunState):
    """One optimizer iteration; returns (new state, loss at the iterate it started from)."""
    optimizer = make_optimizer(config)
    fn = lambda x: loss_fn(box(x))  # noqa: E731
    x = state.image
    if config.name == "lbfgs":
        # The value and gradient at x are in the state: the line search computed them
        # (or ``with_value_and_grad`` did, at a chunk's start). Read directly, not through
        # optax.value_and_grad_from_state, whose lax.cond would evaluate both branches,
        # one more value+grad per iteration, under vmap.
        value, grad = optax.tree.get(state.opt_state, "value"), optax.tree.get(state.opt_state, "grad")
        updates, opt_state = optimizer.update(
            grad, state.opt_state, x, value=value, grad=grad, value_fn=fn
        )
    else:
        value, grad = jax.value_and_grad(fn)(x)
        updates, opt_state = optimizer.update(grad, state.opt_state, x)
    x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
    d = jnp.float32(config.average_decay)
    average = IterateAverage(d * state.average.total + (1 - d) * x, d * state.average.weight + (1 - d))
    return RunState(x, opt_state, average), value


def with_value_and_grad(loss_fn: Callable[[jax.Array], jax.Array], config: OptimizerConfig, state: RunState) -> RunState:
    """For L-BFGS, make sure the state holds the loss and gradient at its image.

    After ``init_state`` (or a restore) the state holds none yet; afterwards the line
    search keeps them, and this costs nothing outside vmap (under vmap, one evaluation).
    """
    if config.name != "lbfgs":
        return state
    fn = lambda x: loss_fn(box(x))  # noqa: E731
    value, grad = optax.value_and_grad_from_state(fn)(state.image, state=state.opt_state)
    return state._replace(opt_state=optax.tree.set(state.opt_state, value=value, grad=grad))


class ChunkResult(NamedTuple):
    """What one compiled chunk returns besides the state."""

    losses: jax.Array  # losses[i]: loss at the start of iteration i; NaN where not run
    last_finite: jax.Array  # the result (iterate average) up to the last iterate whose loss was finite
    ran: jax.Array  # iterations run: n, or fewer if the loss stopped being finite


def _chunk(state: RunState, n: jax.Array, loss_args: Any, loss_fn, config, chunk_size: int):
    """The body of ``run_chunk`` (below), unjitted so that it can be vmapped too."""

    def keep_going(carry):
        i, _, _, _, finite = carry
        return (i < n) & finite

    def body(carry):
        i, old, losses, last_finite, _ = carry
        new, value = step(lambda x: loss_fn(x, *loss_args), config, old)
        loss_finite = jnp.isfinite(value)
        ok = loss_finite & jnp.all(jnp.isfinite(new.image))
        # A bad step is not taken: the state stays as it was, and the loop ends.
        state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        # What the run gives up to the last iterate with a finite loss: the iterate
        # average (``RunState.result``), not the bare iterate.
        last_finite = jnp.where(loss_finite, old.result, last_finite)
        return i + ok.astype(i.dtype), state, losses.at[i].set(value), last_finite, ok

    state = with_value_and_grad(lambda x: loss_fn(x, *loss_args), config, state)
    losses = jnp.full((chunk_size,), jnp.nan, jnp.float32)
    init = (jnp.int32(0), state, losses, state.result, jnp.bool_(True))
    ran, state, losses, last_finite, _ = jax.lax.while_loop(keep_going, body, init)
    return state, ChunkResult(losses, last_finite, ran)


_STATIC = ("loss_fn", "config", "chunk_size")


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnames=("state",))
def run_chunk(state: RunState, n: jax.Array, loss_args: Any, *, loss_fn, config, chunk_size: int):
    """Run up to ``n`` (≤ chunk_size, traced: no recompile) iterations of ``loss_fn(image, *loss_args)``.

    Stops early, inside XLA, at the first iteration whose loss is NaN or infinite or
    whose step would make a pixel so; that step is not taken. Returns (state, ChunkResult).
    """
    return _chunk(state, n, loss_args, loss_fn, config, chunk_size)


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnames=("state",))
def run_chunk_batched(state, n, shared_args, batched_args, *, loss_fn, config, chunk_size: int):
    """``run_chunk`` vmapped over a leading batch axis of ``state`` and ``batched_args``.

    ``loss_fn(image, *shared_args, *batched_args)``. Under vmap each ``while_loop`` (the
    chunk's own and L-BFGS's line search) runs until every member is done, and a member
    that is done keeps its carry unchanged: each member follows exactly the iterates it
    would follow alone, in lockstep with the others. The price is L-BFGS's: every
    line-search step costs the batch's slowest member's count, and ``lax.cond`` inside
    optax's line searches evaluates both branches (zoom: two value+grads a step).
    """

    def one(state, args):
        return _chunk(state, n, (*shared_args, *args), loss_fn, config, chunk_size)

    return jax.vmap(one)(state, batched_args)


class NonFiniteLossWarning(RuntimeWarning):
    """The loss became NaN or infinite; the run stopped at the last finite image."""


class Progress(NamedTuple):
    """What a progress callback receives between chunks.

    ``image`` and ``state`` live on the device and are valid during the call only: the
    next chunk reuses their buffers, so copy what you keep (``np.asarray``).
    """

    iteration: int  # iterations done so far
    iterations: int  # iterations asked for
    loss: float  # loss at the start of the last iteration run
    image: jax.Array  # the result so far (the iterate average; see ``RunState.result``), H×W×3 in [0, 1]
    state: RunState  # image, optimizer state and average: what a checkpoint keeps


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
    """Minimise ``loss_fn(image, *loss_args)`` over images in [0, 1].

    ``loss_fn`` must be a module-level (hashable) function so that the compiled loop
    is reused across calls. ``resume=(state, done)`` continues a run from a saved
    ``RunState`` after ``done`` iterations (``image`` then only gives the shape).
    Returns the final image (the iterate average if ``config.average_decay`` > 0) and
    the losses of the iterations run.

    If the loss becomes NaN or infinite, the run stops, a ``NonFiniteLossWarning`` is
    issued, and the last image whose loss was finite is returned.
    """
    config = check_optimizer(config)
    if iterations < 0:
        raise OptionError(f"iterations must be ≥ 0, got {iterations}")
    if chunk_size < 1:
        raise OptionError(f"chunk size must be ≥ 1, got {chunk_size}")
    state, done = resume if resume is not None else (init_state(image, config), 0)
    history: list[float] = []
    while done < iterations:
        # Chunks end on multiples of chunk_size, a resumed run's too: callbacks come at the same points.
        n = min(chunk_size - done % chunk_size, iterations - done)
        state, result = run_chunk(
            state, jnp.int32(n), loss_args, loss_fn=loss_fn, config=config, chunk_size=chunk_size
        )
        ran = int(result.ran)
        history.extend(float(v) for v in jax.device_get(result.losses[:ran]))
        done += ran
        if ran < n:
            warnings.warn(
                f"the loss or its gradient became NaN or infinite at iteration {done + 1} "
                f"(loss {float(result.losses[ran]):.4g}); stopped there and returned the last "
                "image with a finite loss: lower the learning rate or the loss weights",
                NonFiniteLossWarning,
                stacklevel=2,
            )
            return result.last_finite, history
        if callback is not None:
            callback(Progress(done, iterations, history[-1], state.result, state))
    return state.result, history
