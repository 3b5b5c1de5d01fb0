"""Every flag of ``jaxstyle stylize`` does what the same keyword of the API does.

Each case runs the CLI and ``jaxstyle.stylize`` with the same options and compares the
images bit for bit (the loop is deterministic), then checks that the flag has an effect:
another image than the run without it, or (remat, compute dtype, which change how and
not what is computed) the problem the CLI built.
"""

import jax
import numpy as np
import pytest
from conftest import PLAIN, PLAIN_FLAGS, REAL_CACHE_DIR, smooth_image
from flax import serialization
from PIL import Image

import jaxstyle
import jaxstyle.api
from jaxstyle.cli import main

BASE = dict(PLAIN, size=32, iterations=3, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",), style_weight=1e4)
BASE_FLAGS = ["--size", "32", "--iterations", "3", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
              "--style-weight", "1e4", "--quiet", *PLAIN_FLAGS]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(99)
    d = tmp_path_factory.mktemp("flags")
    paths = {}
    for name, (h, w) in {"content": (40, 48), "style": (36, 36), "other": (30, 30), "init": (20, 24)}.items():
        paths[name] = d / f"{name}.png"
        Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import jax

    from conftest import LOSS_CONVS
    from jaxstyle.vgg import CAFFE_PREPROCESSING, init_vgg19_params
    from jaxstyle.weights import save_weights

    params = jax.tree.map(np.asarray, init_vgg19_params(jax.random.key(0), LOSS_CONVS))
    path = tmp_path_factory.mktemp("w") / "w.msgpack"
    return save_weights(path, {k: v for k, v in params.items() if k != "input"}, CAFFE_PREPROCESSING, {"kind": "random"})


def _cli(files, weights, out, flags, monkeypatch, styles=("style",)):
    """Run the CLI; return its image and the problem it solved."""
    problems = []
    solve = jaxstyle.api.solve
    monkeypatch.setattr(jaxstyle.api, "solve", lambda problem, **kw: problems.append(problem) or solve(problem, **kw))
    argv = ["stylize", str(files["content"]), *[str(files[s]) for s in styles], "-o", str(out), "--weights", str(weights)]
    assert main([*argv, *BASE_FLAGS, *flags]) == 0
    monkeypatch.undo()
    return np.asarray(Image.open(out)), problems[-1]


def _api(files, weights, options, styles=("style",)):
    style = [str(files[s]) for s in styles]
    return np.asarray(jaxstyle.stylize(str(files["content"]), style if len(style) > 1 else style[0],
                                       weights=str(weights), **{**BASE, **options}))  # fmt: skip


def _differs(a, b) -> bool:
    return int(np.abs(a.astype(int) - b.astype(int)).max()) > 0


CASES = {
    "pooling": (["--pooling", "avg"], dict(pooling="avg"), {}),
    "tv-weight": (["--tv-weight", "30"], dict(tv_weight=30.0), {}),
    "content-weight": (["--content-weight", "0.05"], dict(content_weight=0.05), {}),
    "learning-rate": (["--optimizer", "adam", "--learning-rate", "0.1"], dict(optimizer="adam", learning_rate=0.1),
                      dict(optimizer="adam")),
    "optimizer": (["--optimizer", "adam"], dict(optimizer="adam"), {}),
    "linesearch": (["--linesearch", "backtracking"], dict(linesearch="backtracking"), {}),
    "style-scale": (["--style-scale", "0.5"], dict(style_scale=0.5), {}),
    "preserve-color luminance": (["--preserve-color", "luminance"], dict(preserve_color="luminance"), {}),
    "preserve-color histogram": (["--preserve-color", "histogram"], dict(preserve_color="histogram"), {}),
    "preserve-color swap": (["--preserve-color", "swap"], dict(preserve_color="swap"), {}),
    "init image": (["--init", "{init}"], dict(init="{init}"), {}),
    "init noise, seed": (["--init", "noise", "--seed", "5"], dict(init="noise", seed=5), dict(init="noise", seed=0)),
    "style-layer-weights": (["--style-layer-weights", "0.9,0.1"], dict(style_layer_weights=(0.9, 0.1)), {}),
    "average-decay": (["--average-decay", "0.5"], dict(average_decay=0.5), {}),
    "style-loss": (["--style-loss", "sliced_wasserstein", "--style-weight", "1e3"],
                   dict(style_loss="sliced_wasserstein", style_weight=1e3), {}),
    "preset": (["--preset", "paper"], dict(preset="paper"), {}),
    "scales": (["--scales", "2", "--size", "40"], dict(scales=2, size=40), dict(size=40)),
}  # fmt: skip


@pytest.fixture(scope="module")
def baselines(files, weights):
    return {}


@pytest.mark.parametrize("case", list(CASES))
def test_each_flag_equals_the_api_and_changes_the_image(case, files, weights, baselines, tmp_path, monkeypatch):
    flags, options, against = CASES[case]
    flags = [f.format(init=files["init"]) for f in flags]
    options = {k: v.format(init=files["init"]) if isinstance(v, str) else v for k, v in options.items()}
    got, _ = _cli(files, weights, tmp_path / "o.png", flags, monkeypatch)
    np.testing.assert_array_equal(got, _api(files, weights, options))
    key = repr(sorted(against.items()))
    if key not in baselines:
        baselines[key] = _api(files, weights, against)
    assert _differs(got, baselines[key]), f"{case}: the flag changed nothing"


def test_remat_and_bfloat16_in_a_real_solve(files, weights, tmp_path, monkeypatch):
    plain = _api(files, weights, {})
    remat, problem = _cli(files, weights, tmp_path / "r.png", ["--remat"], monkeypatch)
    # With the CPU's fast paths (Winograd) where the backend is the CPU: the same objective, recomputed blocks.
    assert problem.objective.layers.remat
    assert problem.objective.layers.convolutions == ("cpu" if jax.default_backend() == "cpu" else "plain")
    np.testing.assert_array_equal(remat, _api(files, weights, dict(remat=True)))
    assert int(np.abs(remat.astype(int) - plain.astype(int)).max()) <= 1
    bf16, problem = _cli(files, weights, tmp_path / "b.png", ["--compute-dtype", "bfloat16"], monkeypatch)
    assert problem.objective.layers.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(bf16, _api(files, weights, dict(compute_dtype="bfloat16")))
    gap = np.abs(bf16.astype(int) - plain.astype(int))
    assert gap.max() > 0 and gap.mean() < 4  # another precision, nearly the same picture


def test_blend_weights_through_the_cli(files, weights, tmp_path, monkeypatch):
    styles = ("style", "other")
    a, _ = _cli(files, weights, tmp_path / "a.png", ["--style-blend-weights", "3,1"], monkeypatch, styles)
    np.testing.assert_array_equal(a, _api(files, weights, dict(style_blend_weights=[3, 1]), styles))
    b, _ = _cli(files, weights, tmp_path / "b.png", ["--style-blend-weights", "1,3"], monkeypatch, styles)
    assert _differs(a, b)


def test_quiet_and_checkpoint_every(files, weights, tmp_path, capsys, monkeypatch):
    argv = ["stylize", str(files["content"]), str(files["style"]), "--weights", str(weights),
            *[f for f in BASE_FLAGS if f != "--quiet"]]  # fmt: skip
    assert main([*argv, "-o", str(tmp_path / "a.png"), "--iterations", "4"]) == 0
    loud = capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "b.png"), "--iterations", "4", "--quiet"]) == 0
    quiet = capsys.readouterr().err
    assert "4/4" in loud and ("it/s" in loud or "s/it" in loud)  # the progress bar
    assert "4/4" not in quiet and "32×27 px" not in quiet and "32×27 px" in loud
    ckpt = tmp_path / "run.ckpt"
    seen = []
    real = serialization.msgpack_serialize

    def spy(document, *a, **k):
        if isinstance(document, dict) and "iteration" in document:
            seen.append(document["iteration"])
        return real(document, *a, **k)

    monkeypatch.setattr(serialization, "msgpack_serialize", spy)
    assert main([*argv, "-o", str(tmp_path / "c.png"), "--iterations", "7", "--quiet",
                 "--checkpoint", str(ckpt), "--checkpoint-every", "3"]) == 0  # fmt: skip
    assert seen == [3, 6, 7]  # every 3 iterations, and at the end


@pytest.mark.parametrize("flags, text", [
    (["--save-every", "-1"], "--save-every must be ≥ 0"),
    (["--checkpoint-every", "0", "--checkpoint", "x.ckpt"], "--checkpoint-every must be ≥ 1"),
    (["--checkpoint", "{out}"], "checkpoint"),
])  # fmt: skip
def test_refusals(flags, text, files, weights, tmp_path, capsys):
    out = tmp_path / "o.png"
    flags = [f.format(out=out) for f in flags]
    code = main(["stylize", str(files["content"]), str(files["style"]), "-o", str(out), "--weights", str(weights),
                 *BASE_FLAGS, *flags])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("jaxstyle: error: ") and text in err and "\n" not in err, err
    assert not out.exists()


def test_the_cli_leaves_jax_settings_as_it_found_them(files, weights, tmp_path, monkeypatch):
    import jax

    from jaxstyle.weights import cache_dir

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    assert main(["stylize", str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
                 "--weights", str(weights), *BASE_FLAGS, "--size", "36"]) == 0  # fmt: skip
    assert (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs) == before
    # The compiled loop went into the cache directory: the test session's temporary one.
    assert cache_dir() != REAL_CACHE_DIR and any((cache_dir() / "xla").iterdir())
