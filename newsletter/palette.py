"""The colours of the email and the pages, light and dark, derived from ``[brand]``.

A mail program in dark mode that honours ``prefers-color-scheme`` (Apple Mail, Outlook for
Mac, Thunderbird) or Outlook.com's ``[data-ogsc]`` hooks gets the dark palette; the others
show the light one or invert it themselves. Every dark colour the operator leaves out is
derived from the brand: near-black backgrounds tinted with the primary colour, and the
primary and accent colours lightened until they read on them (WCAG contrast 4.5:1 for text).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

from newsletter.config import Brand

WHITE = "#ffffff"
BLACK = "#000000"
# WCAG 2.1 minimum contrast for body text (AA)
TEXT_CONTRAST = 4.5


def rgb(color: str) -> tuple[int, int, int]:
    """``#rgb`` or ``#rrggbb`` as three 0-255 channels."""
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def hex_color(channels: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in channels)


def mix(color: str, other: str, amount: float) -> str:
    """``color`` moved ``amount`` (0-1) of the way towards ``other``."""
    a, b = rgb(color), rgb(other)
    return hex_color((a[0] + (b[0] - a[0]) * amount, a[1] + (b[1] - a[1]) * amount,
                      a[2] + (b[2] - a[2]) * amount))  # fmt: skip


def luminance(color: str) -> float:
    """Relative luminance (WCAG 2.1)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else float(((c + 0.055) / 1.055) ** 2.4)

    r, g, b = (linear(c) for c in rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours, 1 to 21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def readable(color: str, background: str, ratio: float = TEXT_CONTRAST) -> str:
    """``color``, made lighter or darker only as much as it takes to read on ``background``.

    Only the lightness changes (hue and saturation stay), so a brand's navy becomes a
    brighter blue on a dark background rather than a washed-out grey.
    """
    if contrast(color, background) >= ratio:
        return color
    hue, lightness, saturation = colorsys.rgb_to_hls(*(c / 255 for c in rgb(color)))
    lighter = luminance(background) < 0.5
    for step in range(1, 41):
        level = lightness + (1 - lightness) * step / 40 if lighter else lightness * (1 - step / 40)
        channels = colorsys.hls_to_rgb(hue, level, saturation)
        candidate = hex_color((channels[0] * 255, channels[1] * 255, channels[2] * 255))
        if contrast(candidate, background) >= ratio:
            return candidate
    return WHITE if lighter else BLACK


@dataclass(frozen=True)
class Scheme:
    """One set of colours: what every part of the email is painted with."""

    background: str  # behind the 600 px column
    surface: str  # the column itself
    text: str
    muted: str  # bylines, captions, the footer
    heading: str  # section headings, links, card titles
    label: str  # small capitals above blocks, quote rules
    card: str  # related-story cards
    tint: str  # the spotlight and the top banner
    band: str  # the masthead and the call to action (white text on it)
    rule: str  # dividers


@dataclass(frozen=True)
class Palette:
    light: Scheme
    dark: Scheme


CARD = "#f6f5f1"
TINT = "#f3efe4"
MUTED = "#5b5b57"
RULE = "#e2e0d8"


def palette(brand: Brand) -> Palette:
    """The light scheme as the brand says, and a dark one from its ``dark_*`` keys or derived."""
    light = Scheme(
        background=brand.background_color,
        surface=WHITE,
        text=brand.text_color,
        muted=MUTED,
        heading=brand.primary_color,
        label=brand.accent_color,
        card=CARD,
        tint=TINT,
        band=brand.primary_color,
        rule=RULE,
    )
    background = brand.dark_background_color or mix("#111214", brand.primary_color, 0.10)
    surface = brand.dark_surface_color or mix("#1b1c20", brand.primary_color, 0.12)
    text = brand.dark_text_color or readable("#e8e6e1", surface)
    dark = Scheme(
        background=background,
        surface=surface,
        text=text,
        muted=readable(mix(text, surface, 0.30), surface),
        heading=brand.dark_primary_color or readable(brand.primary_color, surface, 6.0),
        label=brand.dark_accent_color or readable(brand.accent_color, surface),
        card=mix(surface, WHITE, 0.06),
        tint=mix(mix(surface, brand.accent_color, 0.06), WHITE, 0.04),
        # the masthead and call to action keep the brand's colour: a logo drawn on it
        # (an opaque PNG) must still sit on the same colour
        band=brand.primary_color,
        rule=mix(surface, text, 0.18),
    )
    return Palette(light=light, dark=dark)
