"""A deep link opened first on a freshly started server (a teacher shares /draw; Community Cloud
has just woken the app up) gets the app's own navigation and session panel, and so does everybody
after."""

from __future__ import annotations

import pytest

from tests.browser import chromium, require_browser, serve_app, wait_idle

pytestmark = pytest.mark.browser
TITLES = ["Home", "Model", "Quantize", "Inside", "Compare", "Draw", "Deploy"]


def test_a_deep_link_opened_first_on_a_fresh_server_runs_inside_the_app(tmp_path):
    require_browser()
    with serve_app(keras_home=str(tmp_path)) as (url, _), chromium() as new_page:
        for path, heading in (("/draw", "Draw"), ("/model", "Model"), ("/", "TFLite Quantization Lab")):
            page = new_page()  # a new visitor each time
            page.goto(url + path)
            wait_idle(page)
            page.locator("h1", has_text=heading).first.wait_for(timeout=60_000)
            nav = page.locator("[data-testid=stSidebarNav] a").all_inner_texts()
            assert [text.split("\n")[-1].strip() for text in nav] == TITLES, nav  # not app, compare, draw, home, …
            assert page.get_by_text("This session", exact=True).first.is_visible()
            assert page.locator("h1", has_text=heading).count() == 1  # the page ran once, inside the app
