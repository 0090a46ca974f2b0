"""The whole path in a real browser: Home → Model (train on the offline digits) → Quantize
(float32, dynamic, int8) → Compare → Draw (a digit drawn with mouse moves), on a real server.

CI installs chromium and sets QLAB_REQUIRE_BROWSER=1, so a missing browser fails there; elsewhere
these tests skip with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import (
    ONE,
    SEVEN,
    chromium_page,
    convert_variants,
    draw_stroke,
    go_to,
    require_browser,
    serve_app,
    train_model,
    wait_idle,
)

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def app_page(tmp_path_factory):
    require_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {SHOTS}")
    with serve_app(keras_home=str(tmp_path_factory.mktemp("keras-home"))) as (url, server), chromium_page() as page:
        page.goto(url)
        wait_idle(page)
        yield page, server


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_1_home_starts_offline_on_the_digits_with_a_notice(app_page):
    page, _ = app_page
    shot(page, "1-home")
    assert page.locator("h1", has_text="TFLite Quantization Lab").is_visible()
    assert page.get_by_text("offline digits", exact=False).first.is_visible()
    assert page.get_by_text("next step", exact=False).first.is_visible()


def test_2_model_trains_on_the_offline_digits(app_page):
    page, _ = app_page
    train_model(page)
    shot(page, "2-model")
    assert page.get_by_text("Keras test accuracy", exact=False).first.is_visible()


def test_3_quantize_converts_float32_dynamic_and_int8(app_page):
    page, _ = app_page
    convert_variants(page, untick=("float16", "int16x8"))
    shot(page, "3-quantize")
    for name in ("float32", "dynamic", "int8"):
        assert page.locator(f".st-key-download_{name}").is_visible()
    assert page.locator(".st-key-download_float16").count() == 0


def test_4_compare_shows_the_charts(app_page):
    page, _ = app_page
    go_to(page, "Compare")
    page.locator(".st-key-chart_confusion").wait_for(timeout=120_000)
    shot(page, "4-compare")
    for key in ("chart_size", "chart_accuracy", "chart_latency", "chart_tradeoff", "chart_confusion"):
        assert page.locator(f".st-key-{key}").count() == 1, key


def test_5_draw_a_digit_and_every_variant_answers(app_page):
    page, _ = app_page
    go_to(page, "Draw")
    assert page.get_by_text("Draw a digit on the black square", exact=False).first.is_visible()
    draw_stroke(page, SEVEN)
    for name in ("float32", "dynamic", "int8"):
        page.locator(f".st-key-predictions [data-variant={name}]").wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "5-draw")
    answers = page.locator(".st-key-predictions [data-variant]")
    assert answers.count() == 3
    for index in range(3):
        text = answers.nth(index).inner_text()
        assert "invoke" in text and "µs" in text and "%" in text


def test_6_a_second_stroke_updates_and_the_drawing_survives_a_page_switch(app_page):
    page, _ = app_page
    draw_stroke(page, ONE)
    page.get_by_text("median", exact=False).first.wait_for()
    page.wait_for_function("() => document.querySelector('[data-variant=float32]')?.innerText.includes('over 2')", timeout=30_000)
    go_to(page, "Quantize")
    assert page.locator(".st-key-download_int8").is_visible()  # the variants survived the switch
    go_to(page, "Draw")
    page.locator(".st-key-predictions [data-variant=int8]").wait_for(timeout=30_000)
    shot(page, "6-draw-again")


def test_7_deploy_runs_every_variant_under_tflite_micro(app_page):
    page, _ = app_page
    go_to(page, "Deploy")
    page.locator(".st-key-chart_deploy").wait_for(timeout=180_000)
    wait_idle(page)
    shot(page, "7-deploy")
    table = page.locator("table").first.inner_text()
    int8 = next(line for line in table.splitlines() if "(int8)" in line)
    dynamic = next(line for line in table.splitlines() if "(dynamic)" in line)
    assert "yes" in int8 and "fits" in int8
    assert "no" in dynamic.split("\t")[1]
    assert page.get_by_text("What TFLite Micro refuses", exact=False).first.is_visible()
    assert page.locator(".st-key-download_c").is_visible()


def test_8_deploys_ram_against_flash_chart_has_log_axes_that_fit_the_data_and_the_boards(app_page):
    """The boards' rectangles once started at 0 on log axes, and plotly stretched the y-axis to 10^252."""
    page, _ = app_page
    chart = page.locator(".st-key-chart_deploy .js-plotly-plot")
    chart.scroll_into_view_if_needed()
    chart.wait_for(timeout=60_000)
    ranges = chart.evaluate("plot => [plot._fullLayout.xaxis.range, plot._fullLayout.yaxis.range]")
    (x_low, x_high), (y_low, y_high) = ranges
    # KB in decades: the variants (~24-85 KB flash, ~12-45 KB arena) and the boards (256 KB-4 MB), with margins.
    assert 0.5 < x_low < 2 and 3.6 < x_high < 4.2, ranges
    assert 0.5 < y_low < 2 and 2.7 < y_high < 3.2, ranges
    chart.screenshot(path=str(SHOTS / "8-deploy-chart.png"))
