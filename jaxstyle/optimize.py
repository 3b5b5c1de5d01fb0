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
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .errors import OptionError

OPTIMIZERS = ("lbfgs", "adam")


class OptimizerConfig(NamedTuple):
    """Optimizer settings; static (hashable) so that they select a compiled program.

    ``learning_rate``: Adam's step size in pixel units (image in [0, 1]); L-BFGS
    ignores it (its zoom line search picks the step).
    ``memory_size``: how many past steps L-BFGS remembers.
    ``max_linesearch_steps``: the most evaluations one L-BFGS line search may make.
    """

    name: str = "lbfgs"
    learning_rate: float = 0.02
    memory_size: int = 20
    max_linesearch_steps: int = 20


def check_optimizer(config: OptimizerConfig) -> OptimizerConfig:
    if config.name not in OPTIMIZERS:
        raise OptionError(f"unknown optimizer {config.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not config.learning_rate > 0:
        raise OptionError(f"learning rate must be > 0, got {config.learning_rate}")
    if config.memory_size < 1 or config.max_linesearch_steps < 1:
        raise OptionError("L-BFGS memory size and line-search steps must be at least 1")
    return config


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformationExtraArgs:
    if config.name == "adam":
        return optax.adam(config.learning_rate)
    return optax.lbfgs(
        memory_size=config.memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=config.max_linesearch_steps, initial_guess_strategy="one"
        ),
    )


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


class RunState(NamedTuple):
    """Everything the loop carries: the image (in [0, 1]) and the optimizer state."""

    image: jax.Array
    opt_state: Any


def init_state(image: jax.Array, config: OptimizerConfig) -> RunState:
    image = jnp.clip(jnp.asarray(image, jnp.float32), 0.0, 1.0)
    state = RunState(image, make_optimizer(config).init(image))
    # The optimizer state may hold the image's own buffer; the loop donates its
    # state, and one buffer cannot be donated twice, so give every leaf its own.
    return jax.tree.map(jnp.copy, state)


def step(loss_fn: Callable[[jax.Array], jax.Array], config: OptimizerConfig, state: RunState):
    """One optimizer iteration; returns (new state, loss at the iterate it started from)."""
    optimizer = make_optimizer(config)
    fn = lambda x: loss_fn(box(x))  # noqa: E731
    x = state.image
    if config.name == "lbfgs":
        # Reuses the value and gradient the line search computed at this point.
        value, grad = optax.value_and_grad_from_state(fn)(x, state=state.opt_state)
        updates, opt_state = optimizer.update(
            grad, state.opt_state, x, value=value, grad=grad, value_fn=fn
        )
    else:
        value, grad = jax.value_and_grad(fn)(x)
        updates, opt_state = optimizer.update(grad, state.opt_state, x)
    x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
    return RunState(x, opt_state), value


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "config", "chunk_size"), donate_argnames=("state",)
)
def run_chunk(state: RunState, n: jax.Array, loss_args: Any, *, loss_fn, config, chunk_size: int):
    """Run ``n`` (≤ chunk_size, traced: no recompile) iterations of ``loss_fn(image, *loss_args)``.

    Returns (state, losses) where ``losses[i]`` is the loss at the start of iteration i
    and NaN past ``n``.
    """

    def body(i, carry):
        state, losses = carry
        state, value = step(lambda x: loss_fn(x, *loss_args), config, state)
        return state, losses.at[i].set(value)

    losses = jnp.full((chunk_size,), jnp.nan, jnp.float32)
    return jax.lax.fori_loop(0, n, body, (state, losses))


class Progress(NamedTuple):
    """What a progress callback receives between chunks."""

    iteration: int  # iterations done so far
    iterations: int  # iterations asked for
    loss: float  # loss at the start of the last iteration run
    image: jax.Array  # the current image, H×W×3 in [0, 1] (on the device)


def minimize(
    loss_fn: Callable[..., jax.Array],
    loss_args: Any,
    image: jax.Array,
    iterations: int,
    config: OptimizerConfig = OptimizerConfig(),
    *,
    chunk_size: int = 10,
    callback: Callable[[Progress], None] | None = None,
) -> tuple[jax.Array, list[float]]:
    """Minimise ``loss_fn(image, *loss_args)`` over images in [0, 1].

    ``loss_fn`` must be a module-level (hashable) function so that the compiled loop
    is reused across calls. Returns the final image and the per-iteration losses.
    """
    check_optimizer(config)
    if iterations < 0:
        raise OptionError(f"iterations must be ≥ 0, got {iterations}")
    if chunk_size < 1:
        raise OptionError(f"chunk size must be ≥ 1, got {chunk_size}")
    state = init_state(image, config)
    history: list[float] = []
    done = 0
    while done < iterations:
        n = min(chunk_size, iterations - done)
        state, losses = run_chunk(
            state, jnp.int32(n), loss_args, loss_fn=loss_fn, config=config, chunk_size=chunk_size
        )
        history.extend(float(v) for v in jax.device_get(losses[:n]))
        done += n
        if callback is not None:
            callback(Progress(done, iterations, history[-1], state.image))
    return state.image, history
