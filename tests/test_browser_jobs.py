"""Jobs that belong to the session, in a real browser against a real server and its worker pool:
a training outlives a page switch, Cancel stops it, and two sessions asking the same thing share
one computation. (Each test has its own server: the pool's counters are read from its stats file.)"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.browser import chromium, go_to, read_stats, require_browser, serve_app, set_training, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture()
def app(tmp_path):
    """A fresh server with its stats file, and a function that opens a new session on it."""
    require_browser()
    stats = tmp_path / "jobs.json"
    env = {"QLAB_JOB_STATS": str(stats), "QLAB_OWNER_GRACE_S": "2"}  # a closed tab's jobs go after 2 s here (30 s by default)
    with serve_app(keras_home=str(tmp_path / "keras"), env=env) as (url, server), chromium() as new_page:

        def open_session():
            page = new_page()
            page.goto(url)
            wait_idle(page)
            return page

        yield open_session, server, stats


def wait_for(condition, timeout: float = 120.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def sidebar_text(page) -> str:
    return page.locator("[data-testid=stSidebar]").inner_text()


def start_training(open_session, epochs: int, until: str = "epoch"):
    """A new session presses Train on the Model page; returns once `until` shows (the job is under way)."""
    page = open_session()
    go_to(page, "Model")
    set_training(page, epochs=epochs)
    page.locator(".st-key-train button").click()
    page.get_by_text(until, exact=False).first.wait_for(timeout=120_000)
    return page


def test_a_training_outlives_a_page_switch_and_lands_while_another_page_is_open(app):
    open_session, _, _ = app
    page = start_training(open_session, 3, until="Training:")  # the job's panel, at once
    go_to(page, "Home")
    assert "Running for this session" in sidebar_text(page)  # the sidebar panel follows the job
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stSidebar]').innerText.includes('3 epochs, augmented on digits')",
        timeout=180_000,
    )
    go_to(page, "Model")
    assert page.get_by_text("Current model", exact=False).first.is_visible()
    assert page.get_by_text("Seed 0, trained for this session", exact=False).first.is_visible()


def test_cancel_stops_the_training_frees_the_worker_and_says_so(app):
    open_session, server, stats = app
    page = start_training(open_session, 30)  # under way in the worker
    page.locator(".st-key-cancel_train button").click()
    page.get_by_text("Training cancelled", exact=False).first.wait_for(timeout=30_000)
    wait_idle(page)
    assert page.get_by_text("Current model", exact=False).count() == 0
    wait_for(lambda: read_stats(stats)["counters"].get("cancelled") == 1, what="the cancel to reach the pool")
    counters = read_stats(stats)["counters"]
    assert counters["running"] == 0 and counters["queued"] == 0

    def no_busy_worker() -> bool:  # the stopped worker is gone; its replacement has not imported TensorFlow
        children = psutil.Process(server.pid).children(recursive=True)
        return all(child.memory_info().rss < 300 * 1024 * 1024 for child in children)

    wait_for(no_busy_worker, what="the cancelled worker's memory to be freed")


def test_two_sessions_with_one_identical_request_share_one_computation(app):
    open_session, _, stats = app
    first, second = open_session(), open_session()
    for page in (first, second):
        go_to(page, "Model")
        set_training(page, epochs=2, seed=5)
    for page in (first, second):
        page.locator(".st-key-train button").click()
    for page in (first, second):
        page.get_by_text("Current model", exact=False).first.wait_for(timeout=180_000)
    counters = read_stats(stats)["counters"]
    assert counters["computed"] == 1 and counters["joined"] + counters["cache_hits"] == 1, counters
    shared = [
        page
        for page in (first, second)
        if page.get_by_text("class's shared cache", exact=False).count() or page.get_by_text("joined it", exact=False).count()
    ]
    assert len(shared) == 1  # the session that did not compute it is told so, and shown the seed
    assert shared[0].locator("[data-testid=stAlert]", has_text="seed 5").count() == 1


def test_closing_the_tab_cancels_the_sessions_job_and_leaves_no_busy_worker(app):
    open_session, server, stats = app
    page = start_training(open_session, 30)  # under way in the worker
    page.context.close()  # the person closes the tab: Streamlit's session disconnects
    wait_for(lambda: read_stats(stats)["counters"].get("cancelled") == 1, timeout=60, what="the orphaned job to be cancelled")
    counters = read_stats(stats)["counters"]
    assert counters["running"] == 0 and counters["done"] == 0
