"""The batched L-BFGS: each member follows its solo iterates, converges where numpy says,
and its line search ends on points that satisfy the conditions it claims."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxstyle import lbfgs
from jaxstyle.optimize import OptimizerConfig, minimize, minimize_batch


def _quadratic(x, a, b):
    """½ xᵀAx − bᵀx on a flattened image, plus a quartic so that line searches work."""
    v = x.reshape(-1)
    return 0.5 * v @ (a @ v) - b @ v + 0.5 * jnp.sum(v**4)


def _problems(rng, k, n=4 * 4 * 3):
    mats, vecs = [], []
    for i in range(k):
        q = rng.standard_normal((n, n))
        mats.append(q @ q.T / n + (0.2 + i) * np.eye(n))  # another conditioning per member
        vecs.append(rng.standard_normal(n) * (1 + i))
    return jnp.asarray(np.stack(mats), jnp.float32), jnp.asarray(np.stack(vecs), jnp.float32)


@pytest.mark.parametrize("linesearch", ["zoom", "backtracking"])
def test_each_member_follows_its_solo_iterates(rng, linesearch):
    a, b = _problems(rng, 3)
    x0 = jnp.full((3, 4, 4, 3), 0.5, jnp.float32)
    config = OptimizerConfig("lbfgs", linesearch=linesearch, memory_size=5)
    batched, histories, _ = minimize_batch(_quadratic, (), (a, b), x0, 15, config, chunk_size=4)
    for k in range(3):
        alone, history = minimize(_quadratic, (a[k], b[k]), x0[k], 15, config, chunk_size=4)
        # Elementwise and small matrix arithmetic: the same numbers, batched or not.
        np.testing.assert_allclose(np.asarray(batched[k]), np.asarray(alone), rtol=0, atol=1e-6)
        np.testing.assert_allclose(histories[k], history, rtol=1e-6)
    assert np.abs(np.asarray(batched[0]) - np.asarray(batched[2])).max() > 1e-2  # the members differ


def test_converges_to_the_box_constrained_minimiser(rng):
    # Without the quartic and with the minimiser inside the box: the numpy solution of Ax = b.
    n = 2 * 2 * 3
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + np.eye(n)
    target = rng.uniform(0.2, 0.8, n)
    b = a @ target
    loss = lambda x, a, b: 0.5 * x.reshape(-1) @ (a @ x.reshape(-1)) - b @ x.reshape(-1)  # noqa: E731
    x, history = minimize(loss, (jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)),
                          jnp.full((2, 2, 3), 0.5, jnp.float32), 40, OptimizerConfig("lbfgs"))  # fmt: skip
    np.testing.assert_allclose(np.asarray(x).reshape(-1), np.linalg.solve(a, b), atol=1e-4)
    assert all(later <= earlier + 1e-6 for earlier, later in zip(history, history[1:]))  # monotone


def test_zoom_steps_satisfy_the_strong_wolfe_conditions(rng):
    a, b = _problems(rng, 2)
    x = jnp.asarray(rng.uniform(0, 1, (2, 4, 4, 3)), jnp.float32)

    def value_and_grad(x):
        return jax.vmap(jax.value_and_grad(_quadratic))(x, a, b)

    f0, g0 = value_and_grad(x)
    d = -g0  # steepest descent: the first trial (step 1) overshoots, so the search must work
    dg0 = jnp.sum(g0 * d, axis=(1, 2, 3))
    step, f, g, found = lbfgs.line_search(value_and_grad, x, d, f0, dg0, g0, jnp.ones(2, bool), max_steps=30, zoom=True)
    assert bool(jnp.all(found))
    f_check, g_check = value_and_grad(x + step[:, None, None, None] * d)
    np.testing.assert_allclose(np.asarray(f), np.asarray(f_check), rtol=1e-5)
    dg = jnp.sum(g_check * d, axis=(1, 2, 3))
    assert bool(jnp.all(f_check <= f0 + lbfgs.C1 * step * dg0))  # sufficient decrease
    assert bool(jnp.all(jnp.abs(dg) <= -lbfgs.C2 * dg0))  # curvature
    assert float(jnp.abs(step[0] - step[1])) > 1e-3  # each member found its own step


def test_direction_is_the_inverse_bfgs_matrix_times_the_gradient(rng):
    # With exact memory the two-loop recursion equals H∇f for the BFGS matrix built in numpy.
    n, m = 6, 3
    s_list = [rng.standard_normal(n) for _ in range(m)]
    a = np.diag(rng.uniform(1, 3, n))
    y_list = [a @ s for s in s_list]
    g = rng.standard_normal(n)
    gamma = s_list[-1] @ y_list[-1] / (y_list[-1] @ y_list[-1])
    h = gamma * np.eye(n)
    for s, y in zip(s_list, y_list):  # oldest first
        rho = 1 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    state = lbfgs.LBFGSState(
        value=jnp.zeros(1), grad=jnp.asarray(g[None], jnp.float32),
        s=jnp.asarray(np.stack(s_list[::-1])[None], jnp.float32), y=jnp.asarray(np.stack(y_list[::-1])[None], jnp.float32),
        rho=jnp.asarray([[1 / (s @ y) for s, y in zip(s_list[::-1], y_list[::-1])]], jnp.float32),
        gamma=jnp.asarray([gamma], jnp.float32),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(lbfgs.direction(state))[0], -h @ g, rtol=1e-4, atol=1e-5)


def test_any_optax_transformation(rng):
    a, b = _problems(rng, 2)
    x0 = jnp.full((2, 4, 4, 3), 0.5, jnp.float32)
    chained = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
    images, histories, _ = minimize_batch(_quadratic, (), (a, b), x0, 30, OptimizerConfig(chained))
    assert all(h[-1] < 0.5 * h[0] for h in histories)
    # optax's own L-BFGS keeps value and gradient in its state: the loop reads them there.
    images, histories, _ = minimize_batch(_quadratic, (), (a, b), x0, 10, OptimizerConfig(optax.lbfgs()))
    ours, our_histories, _ = minimize_batch(_quadratic, (), (a, b), x0, 10, OptimizerConfig("lbfgs"))
    for theirs, mine in zip(histories, our_histories):
        assert theirs[-1] == pytest.approx(mine[-1], rel=0.05, abs=1e-3)  # both reach the minimum's neighbourhood
