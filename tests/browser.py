"""Helpers to serve the app on a free loopback port and drive it in Debian's chromium.

Used by the browser tests and by bench/draw_latency.py. ``playwright install`` cannot download
browsers on these machines, so the system chromium is launched directly.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("QLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HEADINGS = {"Home": "TFLite Quantization Lab"}  # a page's h1, where it is not the page's title
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(keras_home: str | None = None, timeout: float = 60, env: dict | None = None, script: str = "app.py"):
    """`streamlit run app.py` on a free loopback port; yields (url, process). ``env`` adds variables
    (e.g. QLAB_JOB_STATS, where the job service writes its counters); ``script`` runs another app
    (bench/app_figures.py's bare one-line app). Under QLAB_TEST_QUEUE=1 the app's jobs go to a real
    Redis queue and two worker commands (tests/redis_queue.py)."""
    port = free_port()
    queue = {}
    if os.environ.get("QLAB_TEST_QUEUE") == "1" and "QLAB_QUEUE_URL" not in (
        env or {}
    ):  # the queue backend (tests/redis_queue.py)
        from tests.redis_queue import shared_queue_url

        queue = {"QLAB_QUEUE_URL": shared_queue_url()}  # first: it also sets the class's QLAB_QUEUE_SECRET
    env = {
        **os.environ,
        "KERAS_HOME": keras_home or tempfile.mkdtemp(prefix="qlab-keras-"),
        "PYTHONUNBUFFERED": "1",
        **queue,
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile(prefix="qlab-server-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            script,
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Streamlit server did not start; its log: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def browser_available() -> str:
    """'' when chromium and playwright are usable, else why not."""
    if not os.path.exists(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return ""


def require_browser() -> None:
    """Skip (with the reason) where chromium or playwright is missing; fail instead where
    QLAB_REQUIRE_BROWSER=1 (CI), so that the browser tests can never pass by not running."""
    import pytest

    why = browser_available()
    if why:
        if os.environ.get("QLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser tests must run here, but {why}")
        pytest.skip(why)


@contextmanager
def chromium(width: int = 1400, height: int = 1000):
    """Debian's chromium; yields a function that opens a page in a new browser context (a new
    context has its own cookies, so each page is a session of its own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield lambda: browser.new_context(viewport={"width": width, "height": height}).new_page()
        finally:
            browser.close()


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    with chromium(width, height) as new_page:
        yield new_page()


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until the script has finished running (not a sleep)."""
    page.wait_for_selector("[data-testid=stApp]", timeout=timeout)
    page.wait_for_selector(IDLE, timeout=timeout)


def go_to(page, title: str, timeout: float = 120_000) -> None:
    """Move to a page through the app's own sidebar navigation (a full load would start a new session).
    On a phone-sized page the sidebar is collapsed: it is opened first and closed after, as a person would."""
    link = page.locator("[data-testid=stSidebarNav] a", has_text=title).first
    on_screen = "e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > 0 && r.left < innerWidth; }"
    nav_shown = f"() => ({on_screen})(document.querySelector('[data-testid=stSidebarNav] a'))"
    opened = not link.evaluate(on_screen)
    if opened:
        page.locator("[data-testid=stExpandSidebarButton]").first.click()
        page.wait_for_function(nav_shown, timeout=10_000)
    link.click()
    heading = HEADINGS.get(title, title)
    page.wait_for_function(
        f"() => document.title.startsWith('{title}') || document.querySelector('h1')?.innerText.includes('{heading}')",
        timeout=timeout,
    )
    wait_idle(page, timeout)
    if opened and link.evaluate(on_screen):  # the sidebar still covers the page: close it
        page.locator("[data-testid=stSidebarCollapseButton] button, [data-testid=stSidebarCollapseButton]").first.click()
        page.wait_for_function(f"() => !({nav_shown})()", timeout=10_000)


def canvas_box(page):
    surface = page.locator("[data-testid=stBidiComponentIsolated] canvas.upper-canvas").first
    surface.wait_for(state="visible", timeout=60_000)
    return surface.bounding_box()


def draw_stroke(page, points: list[tuple[float, float]], box=None) -> None:
    """Draw one stroke through points given in canvas fractions (0–1)."""
    box = box or canvas_box(page)
    to_xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*to_xy[0])
    page.mouse.down()
    for x, y in to_xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.55, 0.5), (0.45, 0.85)]
ONE = [(0.5, 0.15), (0.5, 0.85)]


def train_model(page, timeout: float = 300_000, epochs: int | None = None, seed: int | None = None) -> None:
    """On the Model page: press Train and wait for this training's word (trained, or served from the
    class's cache, or joined), not just for a model: an earlier one may be shown already."""
    go_to(page, "Model")
    set_training(page, epochs, seed)
    button = page.locator(".st-key-train button")
    button.click()
    # The click's run has started this training: the button is disabled while it runs, or the
    # word of a result served at once from the class's cache is there.
    page.wait_for_function(
        "() => document.querySelector('.st-key-train button')?.disabled || "
        "/shared cache|joined it/.test(document.querySelector('[data-testid=stMain]').innerText)",
        timeout=timeout,
    )
    page.get_by_text(re.compile("Trained in|shared cache|joined it")).first.wait_for(timeout=timeout)
    page.get_by_text("Current model", exact=False).first.wait_for(timeout=timeout)
    wait_idle(page)


def set_number(page, key: str, value: int) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(str(value))
    field.press("Enter")
    wait_idle(page)


def set_training(page, epochs: int | None = None, seed: int | None = None) -> None:
    if epochs is not None:
        set_number(page, "epochs", epochs)
    if seed is not None:
        set_number(page, "seed", seed)


def read_stats(path) -> dict:
    """The job service's counters and finished jobs, as the server last wrote them (QLAB_JOB_STATS)."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"counters": {}, "finished": []}


def convert_variants(
    page, untick: tuple[str, ...] = ("float16", "int16x8"), tick: tuple[str, ...] = (), timeout: float = 300_000
) -> list[str]:
    """On the Quantize page: untick some of the default variants, tick others, convert, wait for the
    table; the variants converted, in the registry's order (those with a download button)."""
    from core.variants import VARIANTS

    go_to(page, "Quantize")
    for name in (*untick, *tick):  # a click turns a box over, whichever way it stood
        page.locator(f".st-key-pick_{name} label").click()
        wait_idle(page)
    page.locator(".st-key-convert button").click()
    page.get_by_text("Converted", exact=True).first.wait_for(timeout=timeout)
    wait_idle(page)
    return [name for name in VARIANTS if page.locator(f".st-key-download_{name}").count()]


def touch_stroke(page, points: list[tuple[float, float]], box=None, steps: int = 4) -> None:
    """One finger stroke through points in canvas fractions (0–1), as a phone sends it (CDP touch
    events; the page's context needs has_touch, or touch emulation turned on)."""
    box = box or canvas_box(page)
    cdp = page.context.new_cdp_session(page)
    try:
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]})
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            for step in range(1, steps + 1):
                point = {"x": x0 + (x1 - x0) * step / steps, "y": y0 + (y1 - y0) * step / steps}
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def touch_tap(page, locator) -> None:
    """A finger's tap on the middle of an element."""
    box = locator.bounding_box()
    touch_stroke(page, [(0.5, 0.5)], box, steps=1)


def preview_source(page) -> str:
    """The 28×28 image the models were given for the drawing now on the canvas (a data URL)."""
    return page.locator(".st-key-predictions img").first.get_attribute("src")


def answers_shown(page) -> dict[str, tuple[str, float]]:
    """Every variant's answer on the Draw page: {variant: (class, its probability)}."""
    return {
        card.get_attribute("data-variant"): (
            card.locator(".answer").inner_text().strip(),
            float(card.locator(".value").first.inner_text().strip().rstrip("%")) / 100,
        )
        for card in page.locator(".st-key-predictions [data-variant]").all()
    }


def draw_digit(page, strokes: list, touch: bool = False) -> dict[str, tuple[str, float]]:
    """Clear the canvas, draw a digit stroke by stroke (each stroke waits for its answer: the canvas
    sends 200 ms after a stroke), and return every variant's answer to the whole digit."""
    clear = page.locator(".st-key-clear_drawing button")
    if clear.is_enabled():
        if touch:
            touch_tap(page, clear)
        else:
            clear.click()
        page.get_by_text("Draw a digit on the black square", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
    box = canvas_box(page)
    before = None
    for stroke in strokes:
        (touch_stroke if touch else draw_stroke)(page, stroke, box)
        page.wait_for_function(
            "before => { const img = document.querySelector('.st-key-predictions img'); return img && img.src !== before; }",
            arg=before,
            timeout=30_000,
        )
        wait_idle(page)
        before = preview_source(page)
    return answers_shown(page)


def use_uploaded_dataset(page, files: list) -> None:
    """On the Model page: pick "Your own files", upload them and use them."""
    go_to(page, "Model")
    page.locator(".st-key-dataset_select").click()
    page.get_by_role("option", name="Your own files", exact=False).click()
    wait_idle(page)
    page.locator(".st-key-dataset_upload input[type=file]").set_input_files([str(path) for path in files])
    page.locator(".st-key-use_dataset button").wait_for(timeout=30_000)
    page.locator(".st-key-use_dataset button").click()
    page.get_by_text("your upload", exact=False).first.wait_for(timeout=60_000)
    wait_idle(page)


# -- your device (issue 16): the LiteRT.js component on Compare and Draw -----------------------------

DEVICE = ".qlab-device"  # the component's root, inside a shadow root: Playwright's locators pierce it


def measured(page, timeout: float = 300_000) -> None:
    """Wait until Compare's measuring component has finished (the component lives in a shadow root:
    Playwright's locators pierce it, document.querySelector does not)."""
    done = f"{DEVICE}[data-mode=measure][data-state=done], {DEVICE}[data-mode=measure][data-state=failed]"
    page.locator(done).first.wait_for(state="attached", timeout=timeout)


def grid_rows(page, key: str) -> list[dict[str, str]]:
    """The rows of an st.dataframe, read from the grid's accessible table (what a screen reader reads)."""
    grid = page.locator(f".st-key-{key} table[role=grid]").first
    grid.wait_for(state="attached", timeout=60_000)
    return grid.evaluate(
        """table => {
            const heads = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
            return [...table.querySelectorAll('tbody tr')].map(tr =>
                Object.fromEntries([...tr.querySelectorAll('td')].map((td, i) => [heads[i + (heads.length - tr.children.length)] ?? i, td.innerText.trim()])));
        }"""
    )


def device_answers(page, strokes_before: int) -> dict[str, int]:
    """The device's answers once it has answered one more stroke than before (its data-strokes)."""
    handle = page.locator(f"{DEVICE}[data-mode=draw]").element_handle(timeout=60_000)
    page.wait_for_function("([root, n]) => Number(root.dataset.strokes || 0) > n", arg=[handle, strokes_before], timeout=60_000)
    return json.loads(page.locator(f"{DEVICE}[data-mode=draw]").get_attribute("data-answers"))


def strokes_seen(page) -> int:
    return int(page.locator(f"{DEVICE}[data-mode=draw]").get_attribute("data-strokes") or 0)


# Stroke → every server answer on screen (the benchmarks): the pointer-up, then the moment all of
# the page's `cards` server cards show the same, new invoke count ("over N").
STROKE_TO_SERVER_ANSWERS = """(cards) => {
  window.__strokes = [];
  document.addEventListener('pointerup', () => { window.__strokes.push({up: performance.now(), done: null}); }, true);
  const seen = () => {
    const shown = [...document.querySelectorAll('.st-key-predictions [data-variant]')];
    if (shown.length < cards) return null;
    const counts = shown.map(c => (c.innerText.match(/over (\\d+)/) || [])[1]);
    return counts.every(x => x && x === counts[0]) ? Number(counts[0]) : null;
  };
  let last = seen();
  new MutationObserver(() => {
    const now = seen();
    if (now !== null && now !== last) {
      last = now;
      const open = window.__strokes.filter(s => s.done === null);
      if (open.length) open[open.length - 1].done = performance.now();
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
