"""Digits as people draw them, stroke by stroke, in canvas fractions (0–1, y downwards): the
drawn-digits benchmark (bench/drawn_digits.py) and the browser tests draw them through the real
canvas. Several ways per digit: a bar "1" and a serif "1", an open and a closed "4", a crossed
"7", and so on. Each way is also drawn smaller and off centre (:func:`placed`)."""

from __future__ import annotations

import math

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 16) -> Stroke:
    """An elliptic arc from ``start`` to ``end`` degrees (0 = right, 90 = down)."""
    return [
        (
            cx + rx * math.cos(math.radians(start + (end - start) * i / (points - 1))),
            cy + ry * math.sin(math.radians(start + (end - start) * i / (points - 1))),
        )
        for i in range(points)
    ]


WAYS: dict[str, tuple[int, list[Stroke]]] = {
    "0 oval": (0, [arc(0.5, 0.5, 0.25, 0.35, -90, 275)]),
    "0 round": (0, [arc(0.5, 0.5, 0.32, 0.32, -100, 265)]),
    "1 bar": (1, [[(0.5, 0.15), (0.5, 0.85)]]),
    "1 slanted bar": (1, [[(0.58, 0.15), (0.44, 0.85)]]),
    "1 flag": (1, [[(0.36, 0.3), (0.52, 0.15), (0.52, 0.85)]]),
    "1 flag and base": (1, [[(0.36, 0.3), (0.52, 0.15), (0.52, 0.85)], [(0.36, 0.85), (0.68, 0.85)]]),
    "2": (2, [arc(0.5, 0.35, 0.22, 0.18, 200, 380, 10) + [(0.3, 0.82), (0.75, 0.82)]]),
    "2 looped": (2, [arc(0.5, 0.33, 0.2, 0.17, 190, 370, 10) + [(0.3, 0.8), (0.42, 0.72), (0.5, 0.82), (0.75, 0.82)]]),
    "3": (3, [arc(0.48, 0.32, 0.2, 0.16, 200, 450, 12) + arc(0.48, 0.66, 0.22, 0.18, -90, 160, 12)]),
    "4 open": (4, [[(0.35, 0.15), (0.28, 0.55), (0.75, 0.55)], [(0.62, 0.3), (0.62, 0.88)]]),
    "4 closed": (4, [[(0.62, 0.88), (0.62, 0.15), (0.25, 0.6), (0.78, 0.6)]]),
    "5": (5, [[(0.7, 0.18), (0.36, 0.18), (0.33, 0.47)] + arc(0.5, 0.63, 0.21, 0.2, -120, 150, 12)]),
    "6": (6, [[(0.62, 0.15)] + arc(0.5, 0.64, 0.2, 0.2, 200, 565, 18)]),
    "7": (7, [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]),
    "7 crossed": (7, [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)], [(0.38, 0.52), (0.7, 0.52)]]),
    "8": (8, [arc(0.5, 0.32, 0.17, 0.16, 90, 450, 16) + arc(0.5, 0.67, 0.21, 0.19, -90, 270, 16)]),
    "9": (9, [arc(0.5, 0.33, 0.19, 0.17, 0, 365, 16) + [(0.69, 0.36), (0.64, 0.86)]]),
    "9 curled": (
        9,
        [arc(0.5, 0.33, 0.19, 0.17, 0, 365, 16) + [(0.69, 0.36), (0.66, 0.72)] + arc(0.5, 0.72, 0.16, 0.12, 0, 150, 6)],
    ),
}


def placed(strokes: list[Stroke], scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> list[Stroke]:
    """The same strokes drawn ``scale`` times the size around the centre, moved by (dx, dy)."""
    return [[(0.5 + (x - 0.5) * scale + dx, 0.5 + (y - 0.5) * scale + dy) for x, y in stroke] for stroke in strokes]


PLACES = {"big": (1.0, 0.0, 0.0), "small, off centre": (0.6, -0.12, 0.1)}


def all_drawings() -> list[tuple[str, int, list[Stroke]]]:
    """(name, the digit meant, strokes) for every way at every place."""
    return [
        (f"{way} ({place})", digit, placed(strokes, *PLACES[place])) for way, (digit, strokes) in WAYS.items() for place in PLACES
    ]


def render(strokes: list[Stroke], size: int = 280, width: int = 18):
    """The strokes drawn as the canvas draws them (white, round ends, on black): an RGBA PNG's bytes,
    for the offline check of the shapes (the benchmark itself draws through the real canvas)."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        xy = [(x * size, y * size) for x, y in stroke]
        pen.line(xy, fill=(255, 255, 255, 255), width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=(255, 255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
