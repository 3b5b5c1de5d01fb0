"""L-BFGS for a batch of independent problems, with a line search written for batches.

Each member k of a batch minimises its own f_k over its own image x_k. Everything
an L-BFGS iteration decides — direction, trial step sizes, acceptance — is decided per
member from that member's numbers alone, so each member follows exactly the iterates it
would follow alone (K = 1). What the members share is the evaluation: every trial of the
line search evaluates f and ∇f of all K members in **one** batched call
(``value_and_grad(x) -> (values (K,), grads (K, ...))``), and no evaluation sits under a
``lax.cond`` (under vmap both branches of one would run). A member that is done waits,
masked, while the others finish their trials; with L-BFGS's unit first trial most
iterations take one trial for every member, so little is wasted.

The line search is Nocedal & Wright's (Numerical Optimization, 2nd ed., algorithms 3.5
and 3.6): bracketing, then zoom, to a point that satisfies the strong Wolfe conditions
(c1 = 1e-4, c2 = 0.9), with safeguarded quadratic interpolation; or, with
``linesearch="backtracking"``, halving until the Armijo condition holds. If no step is
found within ``max_linesearch_steps`` trials, the best trial with sufficient decrease is
taken; if there is none, the member stays where it is and forgets its memory (its next
direction is the scaled gradient). Memory pairs with sᵀy ≤ 0 are not stored, which keeps
the inverse-Hessian approximation positive definite.

The first direction (and the one after a reset) is the gradient scaled by
min(1, 1/‖g‖), as optax's L-BFGS does: a first trial step of length at most 1.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

C1, C2 = 1e-4, 0.9  # sufficient decrease; curvature (strong Wolfe)
_BRACKET, _ZOOM, _DONE = 0, 1, 2


class LBFGSState(NamedTuple):
    """Per member (leading axis K): the value and gradient at the iterate, and the memory."""

    value: jax.Array  # (K,) f at the iterate; +inf until evaluated
    grad: jax.Array  # (K, ...) ∇f there
    s: jax.Array  # (K, m, ...) the last m steps, newest first
    y: jax.Array  # (K, m, ...) the matching gradient changes
    rho: jax.Array  # (K, m) 1 / sᵀy; 0 marks an empty slot
    gamma: jax.Array  # (K,) the initial inverse-Hessian scale sᵀy / yᵀy of the newest pair


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-member inner product over every axis but the first."""
    return jnp.sum(a * b, axis=tuple(range(1, a.ndim)))


def _per_member(v: jax.Array, like: jax.Array) -> jax.Array:
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def _gradient_scale(grad: jax.Array) -> jax.Array:
    return jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.sqrt(_dot(grad, grad)), 1e-30))


def init(x: jax.Array, memory_size: int) -> LBFGSState:
    """An empty memory for the batch of images ``x`` (K, ...); value and gradient unknown."""
    k = x.shape[0]
    memory = jnp.zeros((k, memory_size, *x.shape[1:]), x.dtype)
    return LBFGSState(jnp.full((k,), jnp.inf, jnp.float32), jnp.zeros_like(x), memory, memory,
                      jnp.zeros((k, memory_size), jnp.float32), jnp.ones((k,), jnp.float32))  # fmt: skip


def with_value_and_grad(value_and_grad: Callable, x: jax.Array, state: LBFGSState) -> LBFGSState:
    """The state with f and ∇f at ``x``: evaluated (once, for the batch) only if some member lacks them."""
    missing = jnp.any(state.value == jnp.inf)

    def evaluate(_):
        value, grad = value_and_grad(x)
        return value.astype(jnp.float32), grad

    value, grad = jax.lax.cond(missing, evaluate, lambda _: (state.value, state.grad), None)
    gamma = jnp.where(state.value == jnp.inf, _gradient_scale(grad), state.gamma)
    return state._replace(value=value, grad=grad, gamma=gamma)


def direction(state: LBFGSState) -> jax.Array:
    """−H∇f by the two-loop recursion, H the L-BFGS inverse-Hessian approximation."""
    m = state.rho.shape[1]

    def newest_first(i, carry):
        q, alphas = carry
        s, y, rho = state.s[:, i], state.y[:, i], state.rho[:, i]
        a = rho * _dot(s, q)
        return q - _per_member(a, q) * y, alphas.at[:, i].set(a)

    q, alphas = jax.lax.fori_loop(0, m, newest_first, (state.grad, jnp.zeros_like(state.rho)))
    r = _per_member(state.gamma, q) * q

    def oldest_first(j, r):
        i = m - 1 - j
        s, y, rho = state.s[:, i], state.y[:, i], state.rho[:, i]
        b = rho * _dot(y, r)
        return r + _per_member(alphas[:, i] - b, r) * s

    return -jax.lax.fori_loop(0, m, oldest_first, r)


class _Search(NamedTuple):
    """The line search's per-member state (see Nocedal & Wright, algorithms 3.5 and 3.6)."""

    phase: jax.Array  # _BRACKET, _ZOOM or _DONE
    trial: jax.Array  # the step size to evaluate next
    prev: tuple  # (a, f, f') of the previous trial (bracketing)
    lo: tuple  # (a, f, f') the end of the bracket with the lower value (zoom)
    hi: tuple  # (a, f, f') its other end
    best: tuple  # (a, f, ∇f): the accepted step, or the best with sufficient decrease so far
    found: jax.Array  # whether ``best`` holds a step with sufficient decrease


def _select(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(_per_member(mask, a) if a.ndim > 1 else mask, a, b), new, old)


def _interpolate(lo, hi):
    """The minimiser of the quadratic through f(a_lo), f'(a_lo), f(a_hi), kept away from the
    bracket's ends (else its midpoint)."""
    (a0, f0, d0), (a1, f1, _) = lo, hi
    width = a1 - a0
    curvature = f1 - f0 - d0 * width
    a = a0 - d0 * width * width / jnp.where(curvature != 0, 2.0 * curvature, 1.0)
    low, high = jnp.minimum(a0, a1), jnp.maximum(a0, a1)
    margin = 0.1 * (high - low)
    ok = (curvature > 0) & (a > low + margin) & (a < high - margin) & jnp.isfinite(a)
    return jnp.where(ok, a, 0.5 * (a0 + a1))


def line_search(value_and_grad, x, d, f0, dg0, grad0, active, *, max_steps: int, zoom: bool):
    """Step sizes a (K,) along ``d`` from ``x``; returns (a, f(x + a d), ∇f there, found).

    ``active``: members to search for (the others are done from the start). Each loop
    trip evaluates every member once, in one batched call."""
    k = f0.shape[0]
    zeros = jnp.zeros((k,), jnp.float32)
    start = (zeros, f0, dg0)
    search = _Search(
        phase=jnp.where(active, _BRACKET, _DONE), trial=jnp.ones((k,), jnp.float32), prev=start, lo=start,
        hi=start, best=(zeros, f0, grad0), found=jnp.zeros((k,), bool),
    )  # fmt: skip

    def searching(carry):
        count, search = carry
        return (count < max_steps) & jnp.any(search.phase != _DONE)

    def body(carry):
        count, s = carry
        a = s.trial
        f, g = value_and_grad(x + _per_member(a, x) * d)
        f = f.astype(jnp.float32)
        dg = _dot(g, d)
        finite = jnp.isfinite(f) & jnp.isfinite(dg)
        decrease = finite & (f <= f0 + C1 * a * dg0)
        curvature = jnp.abs(dg) <= -C2 * dg0
        searching_now = s.phase != _DONE
        here = (a, f, dg)
        # The best step with sufficient decrease so far: the fallback.
        better = searching_now & decrease & (~s.found | (f < s.best[1]))
        best = _select(better, (a, f, g), s.best)
        found = s.found | better

        if zoom:
            # Bracketing (algorithm 3.5).
            b = s.phase == _BRACKET
            over = ~decrease | ((count > 0) & (f >= s.prev[1]))  # [prev, a] holds a minimiser
            wolfe = decrease & curvature & ~over
            uphill = ~over & ~wolfe & (dg >= 0)  # [a, prev] holds one
            expand = ~over & ~wolfe & ~uphill
            lo = _select(b & over, s.prev, _select(b & uphill, here, s.lo))
            hi = _select(b & over, here, _select(b & uphill, s.prev, s.hi))
            prev = _select(b & expand, here, s.prev)
            phase = jnp.where(b & wolfe, _DONE, jnp.where(b & (over | uphill), _ZOOM, s.phase))
            next_trial = jnp.where(b & expand, 2.0 * a, s.trial)
            # Zoom (algorithm 3.6), for members that were zooming before this trial.
            z = s.phase == _ZOOM
            too_high = ~decrease | (f >= s.lo[1])
            zoom_wolfe = ~too_high & curvature
            flip = ~too_high & ~zoom_wolfe & (dg * (s.hi[0] - s.lo[0]) >= 0)
            hi = _select(z & too_high, here, _select(z & flip, s.lo, hi))
            lo = _select(z & ~too_high & ~zoom_wolfe, here, lo)
            phase = jnp.where(z & zoom_wolfe, _DONE, phase)
            accepted = (b & wolfe) | (z & zoom_wolfe)
            zooming = phase == _ZOOM
            next_trial = jnp.where(zooming, _interpolate(lo, hi), next_trial)
            # A bracket too narrow to hold a float step: give up on it (the fallback decides).
            narrow = zooming & (jnp.abs(hi[0] - lo[0]) <= 1e-7 * jnp.maximum(jnp.abs(lo[0]), 1e-20))
            phase = jnp.where(narrow, _DONE, phase)
        else:  # backtracking: halve until the decrease is sufficient
            accepted = searching_now & decrease
            phase = jnp.where(accepted, _DONE, s.phase)
            next_trial = jnp.where(accepted, a, 0.5 * a)
            lo, hi, prev = s.lo, s.hi, s.prev
        best = _select(accepted, (a, f, g), best)
        found = found | accepted
        return count + 1, _Search(phase, next_trial, prev, lo, hi, best, found)

    _, search = jax.lax.while_loop(searching, body, (jnp.int32(0), search))
    a, f, g = search.best
    return a, f, g, search.found


def step(value_and_grad, x, state: LBFGSState, active, *, memory_size: int, max_linesearch_steps: int, zoom: bool,
         project: Callable[[jax.Array], jax.Array] = lambda x: x):  # fmt: skip
    """One L-BFGS iteration of every active member; returns (x, state). ``state`` must hold
    f and ∇f at ``x`` (``with_value_and_grad``). ``project`` maps a step's end back into the
    feasible set (the loop's [0, 1] box); the objective must see its argument through the
    same projection, so that the value and gradient found at x + a·d are those at the new x."""
    d = direction(state)
    dg0 = _dot(state.grad, d)
    steepest = -_per_member(_gradient_scale(state.grad), state.grad) * state.grad
    bad = ~(dg0 < 0)  # not a descent direction (NaN included): fall back on the gradient
    d = jnp.where(_per_member(bad, d), steepest, d)
    dg0 = jnp.where(bad, _dot(state.grad, steepest), dg0)
    a, f, g, found = line_search(value_and_grad, x, d, state.value, dg0, state.grad, active,
                                 max_steps=max_linesearch_steps, zoom=zoom)  # fmt: skip
    moved = found & active
    new_x = jnp.where(_per_member(moved, x), project(x + _per_member(a, x) * d), x)
    s, y = new_x - x, g - state.grad
    sy, yy = _dot(s, y), _dot(y, y)
    store = moved & (sy > 1e-10 * jnp.sqrt(_dot(s, s) * yy))
    keep = (moved & ~store) | ~active  # a failed search (active, not moved) forgets the memory
    shift = lambda memory, new: jnp.concatenate([new[:, None], memory[:, :-1]], axis=1)  # noqa: E731
    # Forgetting is rho = 0 alone: a pair with rho 0 adds nothing to the two-loop recursion,
    # so the (K, m, H, W, 3) memories are not touched for it (one pass less over them).
    new_state = LBFGSState(
        value=jnp.where(moved, f, state.value),
        grad=jnp.where(_per_member(moved, g), g, state.grad),
        s=jnp.where(_per_member(store, state.s), shift(state.s, s), state.s),
        y=jnp.where(_per_member(store, state.y), shift(state.y, y), state.y),
        rho=jnp.where(store[:, None], shift(state.rho, 1.0 / jnp.where(store, sy, 1.0)), state.rho * keep[:, None]),
        gamma=jnp.where(store, sy / jnp.where(store, yy, 1.0),
                        jnp.where(keep, state.gamma, _gradient_scale(state.grad))),
    )  # fmt: skip
    return new_x, new_state
