"""The notebook: committed without outputs, runs top to bottom (small) and shows its pictures;
the preview callback, by the display calls it makes."""

import base64
import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

import jaxstyle
from jaxstyle.errors import MissingExtraError
from jaxstyle.notebook import grid, preview

NOTEBOOK = Path(__file__).parent.parent / "examples" / "jaxstyle.ipynb"
FAST = dict(size=32, iterations=6, optimizer="adam", learning_rate=0.05, style_layers=("relu1_1", "relu2_1"),
            content_layers=("relu2_1",))  # fmt: skip


def test_the_committed_notebook_has_no_outputs_and_a_parameters_cell():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "strip the notebook's outputs before committing"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "SIZE =" in "".join(tagged[0]["source"]) and "ITERATIONS =" in "".join(tagged[0]["source"])


class FakeDisplay:
    """IPython.display's ``display`` and its handles, recording what is drawn."""

    def __init__(self):
        self.calls = []

    def display(self, obj, display_id=None):
        assert display_id is True
        self.calls.append(("display", np.asarray(obj)))
        return types.SimpleNamespace(update=lambda new: self.calls.append(("update", np.asarray(new))))

    def install(self, monkeypatch):
        module = types.ModuleType("IPython.display")
        module.display = self.display
        monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
        monkeypatch.setitem(sys.modules, "IPython.display", module)


def test_preview_draws_once_then_redraws_in_place(monkeypatch, random_params, rng):
    screen = FakeDisplay()
    screen.install(monkeypatch)
    content, style = smooth_image(rng, 24, 32), smooth_image(rng, 32, 32)
    show = preview(bar=False)
    image = jaxstyle.stylize(content, style, weights=random_params, callback=show, chunk_size=2, **FAST)
    kinds = [kind for kind, _ in screen.calls]
    assert kinds == ["display", "update", "update"]  # 6 iterations in chunks of 2: one picture, redrawn twice
    frames = [frame for _, frame in screen.calls]
    assert all(f.shape == (24, 32, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])  # the picture changed as it formed
    assert np.abs(frames[-1].astype(int) - np.asarray(image, int)).max() <= 1  # the last frame is the result
    # The same callback for the next run: a new picture, not an update of the old one.
    jaxstyle.stylize(content, style, weights=random_params, callback=show, chunk_size=3, **FAST)
    assert [kind for kind, _ in screen.calls][3:] == ["display", "update"]


def test_preview_of_a_batch_is_a_grid(monkeypatch, random_params, rng):
    screen = FakeDisplay()
    screen.install(monkeypatch)
    content, styles = smooth_image(rng, 24, 32), [smooth_image(rng, 32, 32) for _ in range(3)]
    images = jaxstyle.stylize_batch(content, styles, weights=random_params, callback=preview(columns=3, bar=False),
                                    chunk_size=3, **FAST)  # fmt: skip
    kinds, frames = zip(*screen.calls)
    assert kinds == ("display", "update")
    last = frames[-1]
    assert last.shape == (24, 3 * 32 + 2 * 4, 3)  # three pictures in a row, 4 px apart
    for k, image in enumerate(images):  # each cell of the grid is that item's result
        cell = last[:, k * 36 : k * 36 + 32].astype(int)
        assert np.abs(cell - np.asarray(image, int)).max() <= 1


def test_preview_without_ipython_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(MissingExtraError, match="pip install ipython"):
        preview()


def test_grid_places_images_and_captions(rng):
    a, b, c = (np.full((10, 12, 3), v, np.uint8) for v in (0, 100, 200))
    sheet = np.asarray(grid([a, b, c], columns=2, gap=2))
    assert sheet.shape == (10 * 2 + 2, 12 * 2 + 2, 3)
    assert (sheet[:10, :12] == 0).all() and (sheet[:10, 14:] == 100).all() and (sheet[12:, :12] == 200).all()
    assert (sheet[12:, 14:] == 255).all()  # the empty fourth cell stays white
    captioned = np.asarray(grid([a, b], captions=["one", "two"], columns=2, gap=2))
    assert captioned.shape == (10 + 14, 26, 3)
    assert (captioned[10:, :12] < 128).any()  # text drawn in the caption strip
    with pytest.raises(ValueError, match="1 captions for 2 images"):
        grid([a, b], captions=["one"])


@pytest.mark.real_weights
def test_the_notebook_runs_top_to_bottom_and_shows_its_pictures(real_weights_path, tmp_path, rng, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra: pip install -e '.[notebook]'")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra: pip install -e '.[notebook]'")
    folder = tmp_path / "images"
    folder.mkdir()
    names = ["content.png", "s1.png", "s2.png", "s3.png", "s4.png"]
    for name in names:
        Image.fromarray((smooth_image(rng, 48, 64) * 255).astype(np.uint8)).save(folder / name)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
        f"SIZE = 64\nITERATIONS = 4\nIMAGES = {str(folder)!r}\nCONTENT = {names[0]!r}\nSTYLES = {names[1:]!r}"))  # fmt: skip
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(real_weights_path))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})  # fmt: skip
    client.execute()  # a failing cell raises CellExecutionError

    def pngs(cell):
        return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"])))
                for o in cell.outputs if "image/png" in o.get("data", {})]  # fmt: skip

    runs = [c for c in nb.cells if c.cell_type == "code" and "jaxstyle.stylize" in c.source]
    assert len(runs) == 5  # one painting, the batch, the sweep, the colours, the regions
    for cell in runs:
        shown = pngs(cell)
        assert len(shown) >= 2, cell.source  # the live preview's picture and the cell's result
        assert all(min(p.size) > 8 for p in shown)
    first = pngs(runs[0])
    assert first[0].size == first[-1].size == (64, 48)  # the preview's last frame and the painting
    preview_frame, painting = (np.asarray(p.convert("RGB"), int) for p in (first[0], first[-1]))
    assert np.abs(preview_frame - painting).max() <= 1  # the preview ends on the result
    assert pngs(runs[1])[-1].size[0] == 4 * 64 + 3 * 4  # the batch's grid: four in a row
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"jaxstyle {jaxstyle.__version__} on cpu" in printed and str(real_weights_path) in printed
