"""How often the models read digits drawn on the real canvas: every way of tests/drawn_digits.py
(a bar "1" and a serif one, an open and a closed "4", a crossed "7", …), big and small, drawn
stroke by stroke in headless chromium through the Draw page.

    python bench/drawn_digits.py [--skip-touch]

Prints, for each model, its test accuracy and the rate of drawn digits read right by each variant
(float32, dynamic, int8), and the drawings it misread:

* the offline digits, trained with the Model page's suggestion (30 epochs, augmented);
* the same without augmentation, 13 epochs (what the page suggested before issue 14);
* MNIST-style data: the 10,000 real MNIST digits of tests/data/mnist-small uploaded on the Model
  page, with its suggestion (2 epochs, no augmentation).

The suggested offline model is also drawn on with a finger, in a phone-sized page with touch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    convert_variants,
    draw_digit,
    go_to,
    serve_app,
    set_number,
    train_model,
    use_uploaded_dataset,
    wait_idle,
)
from tests.drawn_digits import all_drawings  # noqa: E402

MNIST_SMALL = Path(__file__).resolve().parents[1] / "tests" / "data" / "mnist-small"


def read_all(page, title: str, touch: bool = False) -> None:
    go_to(page, "Draw")
    drawings = all_drawings()
    right: dict[str, int] = {}
    misread = []
    for name, digit, strokes in drawings:
        try:
            answers = draw_digit(page, strokes, touch=touch)
        except Exception:
            page.screenshot(path="/tmp/drawn-digits-failed.png", full_page=True)
            raise
        for variant, (answer, probability) in answers.items():
            right[variant] = right.get(variant, 0) + (answer == str(digit))
            if variant == "float32" and answer != str(digit):
                misread.append(f"{name} → {answer} ({probability:.0%})")
    rates = ", ".join(f"{variant} {count / len(drawings):.2f}" for variant, count in right.items())
    print(f"{title}: drawn digits read right ({len(drawings)} drawings): {rates}")
    print(f"    float32 misread: {'; '.join(misread) or 'none'}", flush=True)


def train_and_read(page, title: str, epochs: int | None = None, augment: bool | None = None, touch_page=None) -> None:
    go_to(page, "Model")
    if augment is not None:
        box = page.locator(".st-key-augment input")
        if box.is_checked() != augment:
            page.locator(".st-key-augment label").click()
            wait_idle(page)
    if epochs is not None:
        set_number(page, "epochs", epochs)
    train_model(page)
    accuracy = page.locator("[data-testid=stMetric]", has_text="Keras test accuracy").first.inner_text().split("\n")
    trained = page.locator("[data-testid=stSidebar] li", has_text="Model:").first.inner_text()
    print(f"\n== {title} ({trained}): {' '.join(part for part in accuracy if part)}", flush=True)
    convert_variants(page)
    read_all(page, title)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-touch", action="store_true", help="leave out the finger-drawn pass on a phone-sized page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    start = time.perf_counter()
    with serve_app() as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        page.goto(url)
        wait_idle(page)
        train_and_read(page, "offline digits, the page's suggestion (30 epochs, augmented)")
        if not args.skip_touch:
            phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True).new_page()
            phone.goto(url)
            wait_idle(phone)
            train_model(phone)  # the same request: served from the job service's cache
            convert_variants(phone)
            read_all(phone, "the same model, drawn with a finger on a 390 px page", touch=True)
        train_and_read(page, "offline digits, 13 epochs, not augmented", epochs=13, augment=False)
        use_uploaded_dataset(page, sorted(MNIST_SMALL.glob("*.gz")))
        train_and_read(page, "MNIST-style data (mnist-small, 8,000 train), the page's suggestion (2 epochs)")
        browser.close()
    print(f"\n({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
