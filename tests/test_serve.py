"""``jaxstyle serve``: the page, driven in a real headless Chromium by Playwright.

The browser is Debian's (``apt-get install chromium``); Playwright drives it by its path, so
nothing is downloaded. Screenshots go to ``$JAXSTYLE_SCREENSHOTS`` (default: the test's
temporary folder); images never go into git.
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
BOUND = 120  # seconds any one wait may take


def test_serve_without_the_web_extra_says_what_to_install():
    code = "import sys; sys.modules['gradio'] = None; from jaxstyle.cli import main; sys.exit(main(['serve']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 7, done.stderr
    assert "jaxstyle: error: jaxstyle serve needs the web extra" in done.stderr and "pip install -e '.[web]'" in done.stderr


def test_serve_listens_on_this_machine_only_unless_told():
    from jaxstyle.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert build_parser().parse_args(["serve", "--host", "0.0.0.0"]).host == "0.0.0.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(random_weights_file, tmp_path_factory):
    pytest.importorskip("gradio", reason="the web extra: pip install -e '.[web]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "jaxstyle", "serve", "--port", str(port),
                                    "--weights", str(random_weights_file)], stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + BOUND
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"jaxstyle serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield SimpleNamespace(url=url, pid=process.pid)
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' (playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium to drive: apt-get install chromium (Debian's package; .ci/run installs it)")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def pictures(tmp_path, rng):
    """A 64×48 content, two styles, and a text file posing as a PNG."""
    paths = {}
    for name in ("content", "style1", "style2"):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray((smooth_image(rng, 48, 64) * 255).astype(np.uint8)).save(paths[name])
    paths["text"] = tmp_path / "notes.png"
    paths["text"].write_text("not a picture at all\n")
    return paths


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("JAXSTYLE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fill(page, content, styles, *, size=64, iterations=60):
    page.wait_for_selector("#run", timeout=BOUND * 1000)
    page.locator("#content input[type=file]").set_input_files(str(content))
    page.locator("#styles input[type=file]").set_input_files([str(s) for s in styles])
    page.locator("#size input").fill(str(size))
    page.locator("#iterations input").fill(str(iterations))
    page.locator(f"#styles [aria-label='{Path(styles[-1]).name}']").wait_for(timeout=BOUND * 1000)  # uploaded


def _status(page) -> str:
    return page.locator("#status textarea").input_value()


def _wait_status(page, done, what: str) -> str:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        text = _status(page)
        if done(text):
            return text
        time.sleep(0.05)
    pytest.fail(f"the page never showed {what}; its status: {_status(page)!r}")


def _frames(page) -> list:
    """Every picture the page fetched for its preview, as arrays, in order."""
    seen = []
    page.on("response", lambda r: seen.append(r) if "/gradio_api/file=" in r.url and r.url.endswith(".png")
            and r.request.resource_type == "image" else None)  # fmt: skip
    return seen


def test_a_run_shows_the_picture_forming_and_downloads_it(server, browser, pictures, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    responses = _frames(page)
    page.goto(server.url)
    _fill(page, pictures["content"], [pictures["style1"]], iterations=80)
    page.locator("#run").click()
    _wait_status(page, lambda s: s.startswith("iteration"), "an iteration")
    page.screenshot(path=str(shots / "serve-mid-run.png"), full_page=True)
    final = _wait_status(page, lambda s: s.startswith("done") or "error" in s, "the end of the run")
    assert final == "done: 1 image"
    page.screenshot(path=str(shots / "serve-finished.png"), full_page=True)
    frames = []
    for r in responses:
        try:
            frames.append(np.asarray(Image.open(io.BytesIO(r.body())).convert("RGB"), int))
        except Exception:  # noqa: BLE001 - a response the page dropped meanwhile
            continue
    distinct = [f for i, f in enumerate(frames) if all(not np.array_equal(f, g) for g in frames[:i])]
    assert len(distinct) >= 2, f"{len(frames)} preview frames, {len(distinct)} distinct"
    with page.expect_download(timeout=BOUND * 1000) as download:
        page.locator("#download a[download]").first.click()
    path = shots / "downloaded.png"
    download.value.save_as(path)
    result = Image.open(path)
    assert result.format == "PNG" and result.size == (64, 48)
    assert np.abs(np.asarray(result.convert("RGB"), int) - frames[-1]).max() <= 1  # the last frame shown
    page.close()


def test_a_text_file_as_the_content_shows_jaxstyle_s_error_and_the_page_goes_on(server, browser, pictures):
    page = browser.new_page()
    page.goto(server.url)
    _fill(page, pictures["text"], [pictures["style1"]])
    page.locator("#run").click()
    text = _wait_status(page, lambda s: "error" in s or s.startswith("done"), "an error")
    assert text.startswith("jaxstyle: error:") and "content image" in text and "not an image" in text
    assert page.locator("#status textarea").is_visible()  # shown on the page
    # The page again, a good content: the server still serves.
    page.reload()
    _fill(page, pictures["content"], [pictures["style1"]], iterations=20)
    page.locator("#run").click()
    assert _wait_status(page, lambda s: s.startswith("done") or "error" in s, "the end of the run") == "done: 1 image"
    page.close()


def test_two_pages_at_once_both_finish_and_several_styles_make_a_grid(server, browser, pictures):
    pages = [browser.new_context().new_page() for _ in range(2)]  # two sessions, as two people's tabs
    for page, styles in zip(pages, ([pictures["style1"]], [pictures["style1"], pictures["style2"]])):
        page.goto(server.url)
        _fill(page, pictures["content"], styles, iterations=40)
    for page in pages:
        page.locator("#run").click()
    finals = [_wait_status(page, lambda s: s.startswith("done") or "error" in s, "the end of the run") for page in pages]
    assert finals == ["done: 1 image", "done: 2 images"]
    src = pages[1].locator("#picture img").first.get_attribute("src")
    grid = Image.open(io.BytesIO(urllib.request.urlopen(src, timeout=30).read()))
    assert grid.size[0] == 2 * 64 + 4  # the batch's two pictures side by side
    names = [a.get_attribute("download") for a in pages[1].locator("#download a[download]").all()]
    assert names == ["stylized-1-style1.png", "stylized-2-style2.png", "stylized-grid.png"]
    for page in pages:
        page.context.close()


def _cpu_seconds(pid: int) -> float | None:
    """The process's user + system CPU time (Linux's /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_cancel_stops_the_run(server, browser, pictures):
    page = browser.new_page()
    page.goto(server.url)
    _fill(page, pictures["content"], [pictures["style1"]], iterations=5000)
    page.locator("#run").click()
    _wait_status(page, lambda s: s.startswith("iteration"), "an iteration")
    started = time.monotonic()
    page.locator("#cancel").click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _status(page).startswith("iteration") and "/5000" in _status(page):
        seen = _status(page)
        time.sleep(1.0)
        if _status(page) == seen:  # no new chunk for a second: stopped
            break
    assert time.monotonic() - started < 30
    stopped = _status(page)
    cpu = _cpu_seconds(server.pid)
    time.sleep(2.0)
    assert _status(page) == stopped  # nothing moves any more
    assert not stopped.startswith("done")
    if cpu is not None:  # and the server's worker has stopped computing (it would burn ~2 CPU s per s)
        assert _cpu_seconds(server.pid) - cpu < 0.5
    # The next run is served at once (the cancelled one does not hold the queue).
    page.locator("#iterations input").fill("20")
    page.locator("#run").click()
    assert _wait_status(page, lambda s: s.startswith("done") or "error" in s, "the end of the run") == "done: 1 image"
    page.close()
