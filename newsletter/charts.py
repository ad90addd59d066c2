"""Charts for the dashboard, drawn as SVG on the server (pure).

No script and nothing loaded from anywhere: each function returns one ``<svg>`` element as
:class:`markupsafe.Markup`, every piece of text in it escaped. Drawings are laid out on a
360-unit-wide canvas (a phone's width) and scale up with the page, so labels stay about
12 px on a 375 px screen. Colours and fonts come from classes the dashboard's stylesheet
sets (``chart-*``), never from ``style`` attributes, which its Content-Security-Policy
refuses. Each chart carries a ``<title>`` and a ``<desc>`` that says what it shows in words;
the page puts the same numbers in a table beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 360
FONT = 12
_ids = itertools.count(1)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(title: str, desc: str, height: float, body: list[str], *, label: str) -> Markup:
    n = next(_ids)
    t, d = f"chart-{label}-{n}-title", f"chart-{label}-{n}-desc"
    # every piece of text went through escape() above; the rest is numbers and fixed markup
    return Markup(  # noqa: S704
        f'<svg class="chart chart-{escape(label)}" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'role="img" aria-labelledby="{t} {d}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{t}">{escape(title)}</title><desc id="{d}">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, *, cls: str = "chart-label", anchor: str = "start") -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" class="{cls}" text-anchor="{anchor}" '
        f'font-size="{FONT}">{escape(text)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, cls: str) -> str:
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" '
        f'height="{_num(max(h, 0))}" class="{cls}"/>'
    )


def _clip(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bars(items: Sequence[tuple[str, int, int]], *, title: str, unit: str = "clicks") -> Markup:
    """Horizontal bars, one per ``(label, value, apart)``; ``apart`` (automated) drawn beside.

    Each label sits on its own line above its bar, so long link texts need no room to the
    side at phone width.
    """
    row = 38
    height = max(row * len(items), row) + 4
    top = max((value + apart for _, value, apart in items), default=0) or 1
    span = WIDTH - 60
    body: list[str] = []
    for i, (label, value, apart) in enumerate(items):
        y = i * row
        body.append(_text(0, y + 13, _clip(label)))
        w = span * value / top
        body.append(_rect(0, y + 18, w, 14, "chart-bar"))
        if apart:
            body.append(_rect(w, y + 18, span * apart / top, 14, "chart-bar-apart"))
        body.append(_text(span * (value + apart) / top + 4, y + 30, f"{value}", cls="chart-value"))
    words = "; ".join(f"{label}: {value} {unit}" for label, value, _ in items) or "nothing yet"
    return _svg(title, words, height, body, label="bars")


def columns(points: Sequence[tuple[str, int]], *, title: str, unit: str = "messages") -> Markup:
    """Vertical columns over time: ``(axis label, value)``; first, middle and last labelled."""
    height, base, top_pad = 170.0, 140.0, 18.0
    top = max((v for _, v in points), default=0) or 1
    n = max(len(points), 1)
    slot = WIDTH / n
    body = [f'<line x1="0" y1="{_num(base)}" x2="{WIDTH}" y2="{_num(base)}" class="chart-axis"/>']
    for i, (_, value) in enumerate(points):
        h = (base - top_pad) * value / top
        body.append(_rect(i * slot + slot * 0.1, base - h, slot * 0.8, h, "chart-bar"))
    body.append(_text(0, 12, f"max {top} {unit}", cls="chart-value"))
    if points:
        marks = sorted({0, (len(points) - 1) // 2, len(points) - 1})
        for i in marks:
            anchor = "start" if i == 0 else ("end" if i == len(points) - 1 else "middle")
            x = 0 if i == 0 else (WIDTH if i == len(points) - 1 else (i + 0.5) * slot)
            body.append(_text(x, base + 18, points[i][0], anchor=anchor))
    total = sum(v for _, v in points)
    desc = (
        f"{total} {unit} from {points[0][0]} to {points[-1][0]}, at most {top} in one step"
        if points
        else "nothing yet"
    )
    return _svg(title, desc, height, body, label="columns")


@dataclass(frozen=True)
class Gauge:
    """One rate against its thresholds: ``warn`` and, optionally, ``alarm`` (fractions)."""

    label: str
    rate: float | None
    warn: float
    alarm: float | None = None


def thresholds(gauges: Sequence[Gauge], *, title: str) -> Markup:
    """Each rate as a marker on a band coloured ok / warn / alarm at its thresholds."""
    row = 52
    height = row * len(gauges) + 4
    body: list[str] = []
    descs: list[str] = []
    for i, g in enumerate(gauges):
        y = i * row
        limit = g.alarm if g.alarm is not None else g.warn
        scale = max(limit * 1.5, (g.rate or 0) * 1.1)
        shown = "no data" if g.rate is None else f"{g.rate * 100:.2f} %"
        body.append(_text(0, y + 13, f"{g.label}: {shown}"))
        x_warn = WIDTH * g.warn / scale
        x_alarm = WIDTH * g.alarm / scale if g.alarm is not None else WIDTH
        body.append(_rect(0, y + 20, x_warn, 12, "chart-ok"))
        body.append(_rect(x_warn, y + 20, x_alarm - x_warn, 12, "chart-warn"))
        if g.alarm is not None:
            body.append(_rect(x_alarm, y + 20, WIDTH - x_alarm, 12, "chart-alarm"))
        body.append(
            _text(x_warn, y + 46, f"{g.warn * 100:g} %", anchor="middle", cls="chart-value")
        )
        if g.alarm is not None:
            body.append(
                _text(x_alarm, y + 46, f"{g.alarm * 100:g} %", anchor="middle", cls="chart-value")
            )
        if g.rate is not None:
            x = min(WIDTH - 2, WIDTH * g.rate / scale)
            body.append(_rect(x - 2, y + 16, 4, 20, "chart-marker"))
        level = (
            "no data"
            if g.rate is None
            else "alarm"
            if g.alarm is not None and g.rate >= g.alarm
            else "warning"
            if g.rate >= g.warn
            else "fine"
        )
        limits = f"warning at {g.warn * 100:g} %" + (
            f", alarm at {g.alarm * 100:g} %" if g.alarm is not None else ""
        )
        descs.append(f"{g.label} {shown} ({level}; {limits})")
    return _svg(title, "; ".join(descs), height, body, label="thresholds")


def weeks(
    rows: Sequence[tuple[str, int, Sequence[int]]], *, title: str, losses: Sequence[str]
) -> Markup:
    """Week by week: gains up from the axis, losses (stacked, named by ``losses``) down."""
    height, mid = 220.0, 100.0
    top = max((max(gain, sum(lost)) for _, gain, lost in rows), default=0) or 1
    n = max(len(rows), 1)
    slot = WIDTH / n
    scale = (mid - 16) / top
    body = [f'<line x1="0" y1="{_num(mid)}" x2="{WIDTH}" y2="{_num(mid)}" class="chart-axis"/>']
    for i, (_, gain, lost) in enumerate(rows):
        x = i * slot + slot * 0.15
        body.append(_rect(x, mid - gain * scale, slot * 0.7, gain * scale, "chart-bar"))
        y = mid
        for k, value in enumerate(lost):
            body.append(_rect(x, y, slot * 0.7, value * scale, f"chart-loss-{k}"))
            y += value * scale
    if rows:
        for i in sorted({0, len(rows) - 1}):
            anchor = "start" if i == 0 else "end"
            body.append(_text(0 if i == 0 else WIDTH, height - 4, rows[i][0], anchor=anchor))
    body.append(_text(0, 12, f"up to {top} a week", cls="chart-value"))
    desc = "; ".join(
        f"week of {label}: +{gain}, "
        + ", ".join(f"{name} {v}" for name, v in zip(losses, lost, strict=False))
        for label, gain, lost in rows
    )
    return _svg(title, desc or "nothing yet", height, body, label="weeks")
