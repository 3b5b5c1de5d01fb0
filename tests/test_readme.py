"""The README's Python snippets run as written (at a few pixels, on random weights),
so that the documentation cannot drift from the API."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle.api

README = Path(__file__).parent.parent / "README.md"


def python_snippets() -> list[str]:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    # Notebook shell lines (``!pip ...``) are for IPython: the package is installed here already.
    return ["\n".join(line for line in block.splitlines() if not line.startswith("!")) for block in blocks]


def test_the_readme_has_snippets():
    snippets = python_snippets()
    assert len(snippets) >= 4 and all("jaxstyle" in s for s in snippets)


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_readme_snippet_runs(index, tmp_path, monkeypatch, random_weights_file, rng):
    for name in ("photo", "painting", "starry", "scream", "wave"):
        Image.fromarray((smooth_image(rng, 40, 48) * 255).astype(np.uint8)).save(tmp_path / f"{name}.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(random_weights_file))
    prepare = jaxstyle.api.prepare_batch

    def small(contents, styles, **options):  # the snippet's own options, at test size
        if "shape" not in options:
            options["size"] = min(options.get("size", 32), 32)
        options["iterations"] = min(options.get("iterations", 2), 2)
        return prepare(contents, styles, **options)

    monkeypatch.setattr(jaxstyle.api, "prepare_batch", small)
    namespace = {}
    exec(compile(python_snippets()[index], f"README.md python snippet {index + 1}", "exec"), namespace)
    assert {"image", "images", "grams"} & set(namespace)  # every snippet computes something it names
    if "image" in namespace:
        assert isinstance(namespace["image"], Image.Image)
    if "grams" in namespace:
        assert all(g.shape[-1] == g.shape[-2] for g in namespace["grams"].values())
