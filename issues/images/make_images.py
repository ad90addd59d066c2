"""Regenerates the sample issue images (flat illustrations) with only the standard library.

Run ``python issues/images/make_images.py``; the PNGs are committed, so this is only needed to
change them. Each picture is a few bands of colour with simple shapes, which zlib packs small.
Pictures are drawn in layout units and written at twice that size (``SCALE``), as an editor
exports them for high-density screens; ``newsletter build`` makes the email's copies from them.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

Pixel = tuple[int, int, int]
HERE = Path(__file__).resolve().parent
SCALE = 2


def write_png(path: Path, width: int, height: int, paint: Callable[[int, int], Pixel]) -> None:
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(paint(x, y))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def mix(a: Pixel, b: Pixel, t: float) -> Pixel:
    t = max(0.0, min(1.0, t))
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def quantise(p: Pixel, step: int = 12) -> Pixel:
    # fewer distinct colours compress far better and look like a flat print
    return (p[0] // step * step, p[1] // step * step, p[2] // step * step)


def river(x: float, y: float, w: int = 600, h: int = 300) -> Pixel:
    hill = h * 0.52 + 22 * math.sin(x / 70) + 10 * math.sin(x / 23)
    water = h * 0.70 + 6 * math.sin(x / 40)
    sun = math.hypot(x - w * 0.74, y - h * 0.28)
    if y > water:
        band = int((y + 8 * math.sin(x / 17)) / 9) % 2
        return quantise(mix((70, 110, 140), (40, 76, 104), (y - water) / (h - water) + 0.1 * band))
    if y > hill:
        return quantise(mix((78, 112, 70), (46, 78, 50), (y - hill) / (water - hill)))
    if sun < 34:
        return (246, 214, 140)
    return quantise(mix((238, 196, 150), (150, 180, 206), y / hill))


def bridge(x: float, y: float, w: int = 544, h: int = 272) -> Pixel:
    deck = h * 0.45
    arch = deck + 70 * (1 - ((x - w / 2) / (w / 2)) ** 2)
    if deck <= y <= deck + 10 or (abs((x % 68) - 34) < 4 and deck - 50 < y < deck):
        return (60, 60, 66)
    if y > arch and y < arch + 8:
        return (88, 88, 96)
    if y > h * 0.72:
        return quantise(mix((80, 120, 150), (44, 80, 108), (y - h * 0.72) / (h * 0.28)))
    return quantise(mix((210, 222, 232), (160, 190, 214), y / h))


def market(x: float, y: float, w: int = 600, h: int = 300) -> Pixel:
    stall = int(x // 90) % 3
    awning = [(192, 57, 43), (31, 58, 95), (214, 160, 60)][stall]
    if h * 0.2 < y < h * 0.34:
        return awning if (x // 15) % 2 else (244, 240, 230)
    if h * 0.34 <= y < h * 0.7 and x % 90 > 8:
        return quantise(mix((120, 84, 56), (90, 62, 42), (y - h * 0.34) / (h * 0.36)))
    if y >= h * 0.7:
        return (178, 170, 156)
    return quantise(mix((236, 232, 222), (206, 214, 222), y / (h * 0.2)))


def keeper(x: float, y: float, w: int = 240, h: int = 240) -> Pixel:
    head = math.hypot(x - w / 2, y - h * 0.38)
    body = abs(x - w / 2) < 54 - (y - h * 0.62) * 0.1 and y > h * 0.58
    if head < 40:
        return (214, 170, 130)
    if body:
        return (31, 58, 95)
    return quantise(mix((243, 239, 228), (220, 206, 176), y / h))


def chimney(x: float, y: float, w: int = 544, h: int = 272) -> Pixel:
    """A tall brick chimney with a scaffold at its foot and low flats behind."""
    taper = 22 + y * 0.05
    if abs(x - w * 0.3) < taper and y > 20:
        return (150, 70, 50) if (y // 12 + (x // 20) % 2) % 2 else (170, 84, 60)
    if y > h * 0.62 and abs(x - w * 0.3) < taper + 18 and (x % 14 < 2 or y % 20 < 2):
        return (90, 90, 96)
    if y > h * 0.55 and x > w * 0.45 and x < w * 0.95:
        window = 12 <= x % 40 < 28 and 8 <= y % 30 < 20
        return (236, 226, 190) if window else (196, 190, 180)
    if y > h * 0.85:
        return (140, 136, 128)
    return quantise(mix((206, 214, 226), (232, 226, 214), y / h))


def logo(x: float, y: float, w: int = 360, h: int = 80) -> Pixel:
    """A white wordmark stand-in on the brand blue: a mill wheel and three bars."""
    wheel = math.hypot(x - 40, y - 40)
    if 26 < wheel < 32 or (wheel < 32 and (abs(x - 40) < 3 or abs(y - 40) < 3)):
        return (255, 255, 255)
    for top, length in ((22, 290), (38, 240), (54, 180)):
        if 86 <= x < 86 + length and top <= y < top + 7:
            return (255, 255, 255) if top != 38 else (192, 57, 43)
    return (31, 58, 95)


def snow_road(x: float, y: float, w: int = 600, h: int = 300) -> Pixel:
    """The valley road under snow: white hills, a dark road winding up, falling flakes."""
    flake = (int(x * 7 + y * 13) % 97 == 0) and y < h * 0.6
    if flake:
        return (255, 255, 255)
    ridge = h * 0.42 + 26 * math.sin(x / 80) + 8 * math.sin(x / 19)
    road = w * 0.5 + (y - h) * 0.9 + 60 * math.sin(y / 45)
    if y > ridge:
        if abs(x - road) < 6 + (y - ridge) * 0.18:
            return quantise(mix((96, 98, 104), (62, 64, 70), (y - ridge) / (h - ridge)))
        shade = 0.18 * math.sin(x / 37 + y / 23)
        return quantise(mix((246, 248, 252), (198, 210, 226), (y - ridge) / (h - ridge) + shade))
    return quantise(mix((176, 186, 200), (226, 230, 236), y / ridge))


def gauge(x: float, y: float, w: int = 300, h: int = 200) -> Pixel:
    """A river gauge board: a white post with red and black marks above brown water."""
    water = h * 0.66 + 3 * math.sin(x / 11)
    post = abs(x - w * 0.45) < 18
    if post and y < water:
        mark = int(y // 10) % 2
        if abs(x - w * 0.45) < 14 and int(y // 5) % 4 == 0:
            return (192, 57, 43) if mark else (30, 30, 34)
        return (244, 244, 240)
    if y >= water:
        return quantise(mix((122, 96, 66), (84, 66, 48), (y - water) / (h - water)))
    return quantise(mix((196, 206, 214), (160, 176, 186), y / water))


def library(x: float, y: float, w: int = 300, h: int = 200) -> Pixel:
    """The library at night: lit windows in a dark brick front under a deep blue sky."""
    if y > h * 0.28 and w * 0.12 < x < w * 0.88:
        if y > h * 0.86:
            return (70, 62, 58)
        lit = 10 <= (x - w * 0.12) % 44 < 32 and 14 <= (y - h * 0.28) % 40 < 32
        return (246, 206, 120) if lit else (96, 56, 46)
    if y > h * 0.86:
        return (52, 54, 60)
    return quantise(mix((18, 30, 62), (44, 62, 104), y / h))


def gritter(x: float, y: float, w: int = 300, h: int = 200) -> Pixel:
    """A yellow gritter lorry on a white road, spraying a fan of grit behind it."""
    if h * 0.36 < y < h * 0.72 and w * 0.3 < x < w * 0.82:
        cab = x > w * 0.66
        if cab and y < h * 0.5 and x > w * 0.7:
            return (170, 200, 220)
        return (232, 176, 36) if not cab else (214, 158, 28)
    for wheel_x in (w * 0.4, w * 0.74):
        if math.hypot(x - wheel_x, y - h * 0.74) < 14:
            return (34, 34, 38)
    if x < w * 0.3 and h * 0.5 < y < h * 0.8 and int(x * 3 + y * 5) % 11 == 0:
        return (120, 104, 86)
    if y > h * 0.72:
        return quantise(mix((236, 240, 246), (206, 214, 226), (y - h * 0.72) / (h * 0.28)))
    return quantise(mix((200, 208, 218), (232, 236, 240), y / h))


def choir(x: float, y: float, w: int = 300, h: int = 200) -> Pixel:
    """Five singers in red scarves, heads as discs, against a warm hall wall."""
    for index in range(5):
        cx = w * (0.14 + index * 0.18)
        if math.hypot(x - cx, y - h * 0.38) < 20:
            return (214, 170, 130) if index % 2 else (166, 118, 86)
        if abs(x - cx) < 26 and h * 0.5 < y < h * 0.58:
            return (192, 57, 43)
        if abs(x - cx) < 30 and y >= h * 0.58:
            return (31, 58, 95) if index % 2 else (48, 48, 56)
    return quantise(mix((236, 222, 196), (214, 194, 160), y / h))


def baker(x: float, y: float, w: int = 240, h: int = 240) -> Pixel:
    """A baker in a white hat beside a row of loaves on a wooden counter."""
    head = math.hypot(x - w * 0.4, y - h * 0.36)
    if abs(x - w * 0.4) < 30 and h * 0.12 < y < h * 0.26:
        return (250, 250, 246)
    if head < 34:
        return (200, 150, 110)
    if abs(x - w * 0.4) < 56 - (y - h * 0.6) * 0.1 and y > h * 0.52:
        return (244, 242, 236)
    if y > h * 0.78:
        loaf = math.hypot((x % 60) - 30, (y - h * 0.8) * 2) < 26
        return (196, 130, 62) if loaf else (132, 92, 58)
    return quantise(mix((246, 232, 206), (226, 204, 168), y / h))


IMAGES = {
    "logo.png": (360, 80, logo),  # shown 180 px wide: already twice its size
    "hero-river.png": (600, 300, river),
    "footbridge.png": (544, 272, bridge),
    "market.png": (600, 300, market),
    "keeper.png": (240, 240, keeper),
    "chimney.png": (544, 272, chimney),
    "snow-road.png": (600, 300, snow_road),
    "gauge.png": (300, 200, gauge),
    "gauge-board.png": (544, 300, partial(gauge, w=544, h=300)),
    "library-night.png": (300, 200, library),
    "gritter.png": (300, 200, gritter),
    "choir.png": (300, 200, choir),
    "baker.png": (240, 240, baker),
}
# drawn at the size it is shown; the others are written at SCALE times theirs
ACTUAL_SIZE = {"logo.png"}


def write_scaled(
    path: Path, width: int, height: int, paint: Callable[..., Pixel], scale: int
) -> None:
    write_png(path, width * scale, height * scale, lambda x, y: paint(x / scale, y / scale))


if __name__ == "__main__":
    for name, (width, height, paint) in IMAGES.items():
        write_scaled(HERE / name, width, height, paint, 1 if name in ACTUAL_SIZE else SCALE)
        print(f"{name}: {(HERE / name).stat().st_size} bytes")
