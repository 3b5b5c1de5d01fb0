"""``jaxstyle serve``: a local web page to stylize, built with Gradio (the ``web`` extra).

The user drops a content image and one or more style images, picks a preset, the size,
the iterations and colour preservation, presses Run and watches the picture form (redrawn
every chunk, with the iteration and the loss), then downloads the PNG. Several styles are
one batch, shown as a grid (each picture, and the grid, to download). Cancel stops the run at its next chunk. Runs from several
tabs wait in one queue (one run at a time: the device is shared) and none is lost. A bad
upload is reported on the page with jaxstyle's own message, and the server goes on.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from .api import stylize_batch  # noqa: E402
from .config import DEFAULTS, PRESETS  # noqa: E402
from .errors import JaxstyleError  # noqa: E402
from .images import as_pil, grid, save_image  # noqa: E402
from .optimize import Progress  # noqa: E402

#: The picture fills its box whatever its size, so that a small one can be looked at closely.
CSS = "#picture img {width: 100%; height: 100%; object-fit: contain;}"

#: What the page offers; anything else is the preset's (or the default's).
COLOR_MODES = {"no (the style's colours)": None, "luminance": "luminance", "histogram": "histogram", "swap": "swap"}
MAX_SIZE = 1024  # the page's largest output side: a shared machine, one run at a time


class _Cancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel."""


class _Runs:
    """One stop flag per browser session: Cancel sets its session's flag, the run's
    callback sees it at the next chunk."""

    def __init__(self):
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event:
        with self._lock:
            stop = self._stops[session] = threading.Event()
        return stop

    def cancel(self, session: str) -> None:
        with self._lock:
            stop = self._stops.get(session)
        if stop is not None:
            stop.set()


def _paths(files) -> list[str]:
    if files is None:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def _picture(images: np.ndarray, names: list[str]):
    return as_pil(images[0]) if len(images) == 1 else grid(images, captions=names)


def run_stylize(content, styles, preset, size, iterations, colors, *, weights=None, chunk_size: int = 10,
                stop: threading.Event | None = None, out_dir: Path | None = None) -> Iterator[tuple]:  # fmt: skip
    """The page's Run: yields (picture, status, download) after every chunk, then the
    result and its PNG. jaxstyle's errors end the run with their message as the status."""
    stop = stop or threading.Event()
    contents, style_files = _paths(content), _paths(styles)
    if not contents or not style_files:
        yield None, "jaxstyle: error: drop a content image and at least one style image", None
        return
    if size is None or iterations is None or not 1 <= int(size) <= MAX_SIZE or int(iterations) < 1:
        yield None, f"jaxstyle: error: give a size from 1 to {MAX_SIZE} px and at least 1 iteration", None
        return
    names = [Path(s).stem for s in style_files]
    options = dict(size=int(size), iterations=int(iterations), preserve_color=COLOR_MODES.get(colors, colors))
    if preset and preset != "none":
        options["preset"] = preset
    if weights is not None:
        options["weights"] = weights
    events: queue.Queue = queue.Queue()

    def callback(progress: Progress) -> None:
        if stop.is_set():
            raise _Cancelled
        events.put(("progress", (progress.iteration, progress.iterations, progress.loss, np.asarray(progress.images))))

    def work() -> None:
        try:
            images = stylize_batch(contents[0], style_files, callback=callback, chunk_size=chunk_size, **options)
            events.put(("done", images))
        except _Cancelled:
            events.put(("cancelled", None))
        except JaxstyleError as e:
            events.put(("error", f"jaxstyle: error: {e}"))
        except Exception as e:  # noqa: BLE001 - the page reports it; the server goes on
            events.put(("error", f"jaxstyle: internal error: {type(e).__name__}: {e}"))

    worker = threading.Thread(target=work, name="jaxstyle-run", daemon=True)
    worker.start()
    yield None, "starting: preparing the targets and compiling…", None
    try:
        while True:
            kind, payload = events.get()
            if kind == "progress":
                iteration, total, loss, images = payload
                yield _picture(images, names), f"iteration {iteration}/{total} · loss {loss:.4g}", None
            elif kind == "done":
                picture = _picture(np.stack([np.asarray(i) for i in payload]), names)
                folder = Path(tempfile.mkdtemp(prefix="jaxstyle-", dir=out_dir))
                stems = [f"stylized-{name}" if len(payload) == 1 else f"stylized-{k + 1}-{name}" for k, name in enumerate(names)]
                files = [str(save_image(image, folder / f"{stem}.png")) for image, stem in zip(payload, stems)]
                if len(payload) > 1:
                    files.append(str(save_image(picture, folder / "stylized-grid.png")))
                yield picture, f"done: {len(payload)} image{'s' if len(payload) > 1 else ''}", files
                return
            elif kind == "cancelled":
                yield gr.skip(), "cancelled", None
                return
            else:
                yield None, payload, None
                return
    finally:
        stop.set()  # the page went away or the run was cancelled: the worker stops at its next chunk


def build_app(*, weights=None, chunk_size: int = 10) -> gr.Blocks:
    """The page. ``weights``: a converted weights file (default: jaxstyle's usual search)."""
    runs = _Runs()
    with gr.Blocks(title="jaxstyle") as app:
        gr.Markdown("# jaxstyle\nNeural style transfer (Gatys, Ecker & Bethge 2016) in JAX. Drop a photo and one or "
                    "more paintings, press Run, watch the picture form.")  # fmt: skip
        with gr.Row():
            with gr.Column():
                content = gr.File(label="Content image", file_count="single", elem_id="content")
                styles = gr.File(label="Style image(s)", file_count="multiple", elem_id="styles")
                preset = gr.Dropdown(["none", *PRESETS], value="none", label="Preset", elem_id="preset")
                size = gr.Number(value=256, minimum=16, maximum=MAX_SIZE, precision=0, label="Size (px, longer side)",
                                 elem_id="size")  # fmt: skip
                iterations = gr.Number(value=DEFAULTS.iterations, minimum=1, maximum=5000, precision=0,
                                       label="Iterations", elem_id="iterations")  # fmt: skip
                colors = gr.Radio(list(COLOR_MODES), value=next(iter(COLOR_MODES)), label="Keep the content's colours",
                                  elem_id="colors")  # fmt: skip
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    cancel = gr.Button("Cancel", elem_id="cancel")
            with gr.Column():
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                picture = gr.Image(label="Picture", type="pil", format="png", interactive=False, height=420,
                                   elem_id="picture")  # fmt: skip
                download = gr.File(label="Download PNG", file_count="multiple", interactive=False, elem_id="download")

        def start(content_, styles_, preset_, size_, iterations_, colors_, request: gr.Request):
            stop = runs.start(request.session_hash)
            yield from run_stylize(content_, styles_, preset_, size_, iterations_, colors_, weights=weights,
                                   chunk_size=chunk_size, stop=stop)  # fmt: skip

        def stop(request: gr.Request):
            runs.cancel(request.session_hash)

        event = run.click(start, [content, styles, preset, size, iterations, colors], [picture, status, download],
                          concurrency_limit=1, concurrency_id="runs")  # fmt: skip
        cancel.click(stop, None, None, queue=False, cancels=[event])
    return app


def serve(*, host: str = "127.0.0.1", port: int = 7860, weights=None, open_browser: bool = False) -> None:
    """Serve the page until interrupted; only this machine can reach it unless ``host`` says otherwise."""
    app = build_app(weights=weights)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, inbrowser=open_browser, ssr_mode=False, share=False,
               max_file_size="50mb", show_error=True, css=CSS)  # fmt: skip
