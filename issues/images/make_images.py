"""Regenerates the sample issue images (flat illustrations) with only the standard library.

Run ``python issues/images/make_images.py``; the PNGs are committed, so this is only needed to
change them. Each picture is a few bands of colour with simple shapes, which zlib packs small.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

Pixel = tuple[int, int, int]
HERE = Path(__file__).resolve().parent


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


def river(x: int, y: int, w: int = 600, h: int = 300) -> Pixel:
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


def bridge(x: int, y: int, w: int = 544, h: int = 272) -> Pixel:
    deck = h * 0.45
    arch = deck + 70 * (1 - ((x - w / 2) / (w / 2)) ** 2)
    if deck <= y <= deck + 10 or (abs((x % 68) - 34) < 4 and deck - 50 < y < deck):
        return (60, 60, 66)
    if y > arch and y < arch + 8:
        return (88, 88, 96)
    if y > h * 0.72:
        return quantise(mix((80, 120, 150), (44, 80, 108), (y - h * 0.72) / (h * 0.28)))
    return quantise(mix((210, 222, 232), (160, 190, 214), y / h))


def market(x: int, y: int, w: int = 600, h: int = 300) -> Pixel:
    stall = (x // 90) % 3
    awning = [(192, 57, 43), (31, 58, 95), (214, 160, 60)][stall]
    if h * 0.2 < y < h * 0.34:
        return awning if (x // 15) % 2 else (244, 240, 230)
    if h * 0.34 <= y < h * 0.7 and x % 90 > 8:
        return quantise(mix((120, 84, 56), (90, 62, 42), (y - h * 0.34) / (h * 0.36)))
    if y >= h * 0.7:
        return (178, 170, 156)
    return quantise(mix((236, 232, 222), (206, 214, 222), y / (h * 0.2)))


def keeper(x: int, y: int, w: int = 240, h: int = 240) -> Pixel:
    head = math.hypot(x - w / 2, y - h * 0.38)
    body = abs(x - w / 2) < 54 - (y - h * 0.62) * 0.1 and y > h * 0.58
    if head < 40:
        return (214, 170, 130)
    if body:
        return (31, 58, 95)
    return quantise(mix((243, 239, 228), (220, 206, 176), y / h))


def chimney(x: int, y: int, w: int = 544, h: int = 272) -> Pixel:
    """A tall brick chimney with a scaffold at its foot and low flats behind."""
    taper = 22 + y * 0.05
    if abs(x - w * 0.3) < taper and y > 20:
        return (150, 70, 50) if (y // 12 + (x // 20) % 2) % 2 else (170, 84, 60)
    if y > h * 0.62 and abs(x - w * 0.3) < taper + 18 and (x % 14 < 2 or y % 20 < 2):
        return (90, 90, 96)
    if y > h * 0.55 and x > w * 0.45 and x < w * 0.95:
        window = (x % 40) in range(12, 28) and (y % 30) in range(8, 20)
        return (236, 226, 190) if window else (196, 190, 180)
    if y > h * 0.85:
        return (140, 136, 128)
    return quantise(mix((206, 214, 226), (232, 226, 214), y / h))


def logo(x: int, y: int, w: int = 360, h: int = 80) -> Pixel:
    """A white wordmark stand-in on the brand blue: a mill wheel and three bars."""
    wheel = math.hypot(x - 40, y - 40)
    if 26 < wheel < 32 or (wheel < 32 and (abs(x - 40) < 3 or abs(y - 40) < 3)):
        return (255, 255, 255)
    for top, length in ((22, 290), (38, 240), (54, 180)):
        if 86 <= x < 86 + length and top <= y < top + 7:
            return (255, 255, 255) if top != 38 else (192, 57, 43)
    return (31, 58, 95)


IMAGES = {
    "logo.png": (360, 80, logo),
    "hero-river.png": (600, 300, river),
    "footbridge.png": (544, 272, bridge),
    "market.png": (600, 300, market),
    "keeper.png": (240, 240, keeper),
    "chimney.png": (544, 272, chimney),
}


if __name__ == "__main__":
    for name, (width, height, paint) in IMAGES.items():
        write_png(HERE / name, width, height, paint)
        print(f"{name}: {(HERE / name).stat().st_size} bytes")
