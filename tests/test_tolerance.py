"""Early stopping: a member stops once its loss falls by less than ``tolerance`` over a chunk."""

import jax
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle import OptionError
from jaxstyle.checkpoint import problem_fingerprint, save_checkpoint
from jaxstyle.optimize import minimize_batch

FAST = dict(size=32, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",), optimizer="adam", tv_weight=0.0,
            learning_rate=0.02)  # fmt: skip
CHUNK = 10


def _chunk_decreases(history):
    """(L_first − L_last) / |L_first| over each chunk of the history, by hand."""
    return [(history[c] - history[c + CHUNK - 1]) / abs(history[c]) for c in range(0, len(history) - CHUNK + 1, CHUNK)]


def _problem(random_params, rng, **options):
    content, style = smooth_image(rng, 32, 32), smooth_image(rng, 32, 32)
    return jaxstyle.prepare_batch(content, style, weights=random_params, **{**FAST, **options})


def test_a_run_stops_after_the_first_chunk_whose_loss_fell_less_than_the_tolerance(random_params, rng):
    problem = _problem(random_params, rng, sweep={"style_weight": [3e2, 3e5]}, iterations=400, tolerance=0.02)
    images, histories, _ = minimize_batch(problem.objective, (problem.params,), (problem.terms,), problem.init_images,
                                          problem.iterations, problem.optimizer, chunk_size=CHUNK)  # fmt: skip
    lengths = [len(h) for h in histories]
    assert all(n % CHUNK == 0 and 0 < n < 400 for n in lengths), lengths
    assert lengths[0] != lengths[1]  # each member stops on its own
    for history in histories:
        decreases = _chunk_decreases(history)
        assert all(d > 0.02 for d in decreases[:-1]) and decreases[-1] <= 0.02, decreases
    # A stopped member is exactly where a run of that many iterations, without the tolerance, ends.
    for k, n in enumerate(lengths):
        item = problem.item(k)
        alone, history, _ = minimize_batch(item.objective, (item.params,), (jax.tree.map(lambda a: a[None], item.terms),),
                                           item.init_image[None], n, problem.optimizer._replace(tolerance=0.0), chunk_size=CHUNK)  # fmt: skip
        assert history[0] == pytest.approx(histories[k], rel=1e-5)
        np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(images[k]), atol=2e-5)


def test_a_resumed_run_keeps_its_converged_members_where_they_stopped(random_params, rng, tmp_path):
    problem = _problem(random_params, rng, sweep={"style_weight": [3e2, 3e6]}, iterations=200, tolerance=0.02)
    whole = jaxstyle.solve(problem)
    seen = []

    def checkpoint_at_40(progress):
        seen.append(progress.converged.copy())
        if progress.iteration == 40:
            save_checkpoint(tmp_path / "run.ckpt", progress.state, 40, problem_fingerprint(problem),
                            start_images=problem.init_images)  # fmt: skip

    jaxstyle.solve(problem._replace(iterations=40), callback=checkpoint_at_40)
    assert seen[-1].tolist() == [True, False], "the test wants one member converged and one running at iteration 40"
    resumed = jaxstyle.solve(problem, resume=tmp_path / "run.ckpt")
    for a, b in zip(whole, resumed):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tolerance_zero_runs_every_iteration_and_bad_values_are_refused(random_params, rng):
    problem = _problem(random_params, rng, iterations=30, tolerance=0.0)  # (the default stops early)
    _, histories, _ = minimize_batch(problem.objective, (problem.params,), (problem.terms,), problem.init_images,
                                     30, problem.optimizer, chunk_size=CHUNK)  # fmt: skip
    assert len(histories[0]) == 30
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(OptionError, match="tolerance"):
            _problem(random_params, rng, iterations=3, tolerance=bad)


def test_the_command_line_says_where_a_run_converged(random_weights_file, image_files, tmp_path, capsys):
    from jaxstyle.cli import main

    content, style = image_files
    out = tmp_path / "out.png"
    flags = ["--size", "32", "--optimizer", "adam", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
             "--quiet", "--weights", str(random_weights_file), "--iterations", "400"]  # fmt: skip
    assert main(["stylize", str(content), str(style), "-o", str(out), *flags, "--tolerance", "0.05"]) == 0
    err = capsys.readouterr().err
    stopped = int(err.split("converged at iteration ")[1].split()[0])
    assert stopped < 400 and stopped % 10 == 0 and out.exists()
    assert main(["stylize", str(content), str(style), "-o", str(out), *flags, "--iterations", "20"]) == 0
    assert "converged" not in capsys.readouterr().err  # no tolerance: every iteration runs
