"""One image split over devices (spatial_parts): the same objective, the same picture.

The runs with several devices are subprocesses with XLA's forced host devices
(``--xla_force_host_platform_device_count``), which must be set before JAX starts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import smooth_image
from jax.sharding import PartitionSpec

import jaxstyle
from jaxstyle import OptionError

SPLIT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from conftest import LOSS_CONVS, smooth_image
from jaxstyle.vgg import init_vgg19_params
from jaxstyle.sharding import place_batch, run_mesh
import jaxstyle

params = jax.tree.map(np.asarray, init_vgg19_params(jax.random.key(0), LOSS_CONVS))
rng = np.random.default_rng(0)
content, style, x = (smooth_image(rng, 192, 256) for _ in range(3))
common = dict(size=256, weights=params, style_weight=1e4, iterations=10)
found = {}
# The objective: value and gradient at one image, whole and split in four.
for parts in (1, 4):
    item = jaxstyle.prepare(content, style, spatial_parts=parts, convolutions="plain", **common).item()
    at = jnp.asarray(x) if parts == 1 else place_batch(jnp.asarray(x)[None], run_mesh(jax.devices()[:4], 4), (192, 256))[0]
    value, grad = jax.jit(jax.value_and_grad(item.objective))(at, item.params, item.terms)
    found[f"value{parts}"], found[f"grad{parts}"] = float(value), np.asarray(grad).tolist()
    found[f"grad_spec{parts}"] = str(grad.sharding.spec) if parts > 1 else ""
# L-BFGS, 10 iterations: one device against four, one item.
specs = []
record = lambda p: specs.append(str(p.state.image.sharding.spec))
for parts in (1, 4):
    image = jaxstyle.stylize_batch(content, style, devices=jax.devices()[:parts], spatial_parts=parts,
                                   callback=record, **common)[0]
    found[f"lbfgs{parts}"] = np.asarray(image).tolist()
found["state_spec"] = specs[-1]
# A batch of two on a 2 × 2 mesh (batch × space), against the batch on one device.
for devices, parts in ((1, 1), (4, 2)):
    images = jaxstyle.stylize_batch(content, [style, style[::-1]], devices=jax.devices()[:devices],
                                    spatial_parts=parts, **{**common, "size": 128})
    found[f"mesh{devices}"] = [np.asarray(i).tolist() for i in images]
json.dump(found, open(sys.argv[1], "w"))
"""


def test_a_split_image_has_the_objective_and_the_picture_of_a_whole_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "found.json"
    done = subprocess.run([sys.executable, "-c", SPLIT, str(out)], env=env, cwd=Path(__file__).parent,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    # The objective: the same value, the gradient to float rounding (sums in another order).
    assert found["value4"] == pytest.approx(found["value1"], rel=1e-6)
    g1, g4 = np.asarray(found["grad1"]), np.asarray(found["grad4"])
    assert np.linalg.norm(g4 - g1) <= 1e-5 * np.linalg.norm(g1)
    assert found["grad_spec4"] == str(PartitionSpec("space"))  # the gradient stayed split by rows
    assert found["state_spec"] == str(PartitionSpec("batch", "space", None, None))  # so did the run's images
    # The pictures: within one level of 255 (the stated tolerance for L-BFGS).
    a, b = np.asarray(found["lbfgs1"], int), np.asarray(found["lbfgs4"], int)
    assert a.shape == (192, 256, 3) and np.abs(a - b).max() <= 1
    for one, split in zip(found["mesh1"], found["mesh4"]):
        assert np.abs(np.asarray(one, int) - np.asarray(split, int)).max() <= 1


def test_a_layout_that_cannot_be_is_one_clear_error(random_params, rng, image_files, tmp_path, capsys):
    image = smooth_image(rng, 48, 64)
    with pytest.raises(OptionError, match="more than the 3 rows at relu5_1"):  # 48 rows → 3 at relu5_1
        jaxstyle.prepare(image, image, size=64, spatial_parts=4, weights=random_params)
    with pytest.raises(OptionError, match="do not split over devices"):
        jaxstyle.prepare(image, image, size=64, spatial_parts=2, convolutions="cpu", weights=random_params)
    if len(jax.devices()) == 1:
        with pytest.raises(OptionError, match="spatial_parts 2 needs as many devices; there are 1"):
            jaxstyle.prepare(image, image, size=64, spatial_parts=2, weights=random_params)
    problem = jaxstyle.prepare(image, image, size=64, iterations=1, weights=random_params,
                               style_layers=("relu1_1",), content_layers=("relu1_1",))._replace(spatial_parts=2)  # fmt: skip
    with pytest.raises(OptionError, match="does not divide the 3 devices"):
        jaxstyle.solve(problem, devices=jax.devices()[:1] * 3)
    from jaxstyle.cli import main

    out = tmp_path / "out.png"
    content, style = image_files
    for flags, message in [(["--spatial-parts", "3"], "does not divide"), (["--devices", "99"], "--devices 99")]:
        assert main(["stylize", str(content), str(style), "-o", str(out), "--quiet", *flags]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # refused before any work: nothing written
