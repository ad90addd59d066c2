"""Sharp images: twice-the-slot derivatives of the editor's pictures, made with Pillow.

``build``, ``send`` and the preview call :func:`derive_images` before rendering: every local
image an issue shows is resized to twice the width of its slot (never enlarged), cropped to
the slot's shape for card thumbnails, stripped of its metadata (a photo's EXIF can carry the
place it was taken) and recompressed into ``derived_images_dir``. The editor's originals are
only ever read. A derivative's name carries a digest of the original's bytes and of how it was
made, so a replaced original gets a new URL (mail clients and image proxies cache for good)
and one that exists already is not made again. ``newsletter serve`` and the preview serve the
folder at ``{base_url}/images/_derived/``.

:func:`plan_images` works out the same names and sizes without writing anything, for
``check``, which must not write.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as Pillow
from PIL import ImageOps, UnidentifiedImageError

from newsletter import urls
from newsletter.config import Settings
from newsletter.layout import Slot, displayed_images
from newsletter.model import Image, Issue

log = logging.getLogger(__name__)

# where the copies are served, under the site's images (urls.DERIVED_IMAGES without its "/")
DERIVED_URL_PATH = urls.DERIVED_IMAGES.lstrip("/")
# Bump when the way derivatives are made changes, so every name changes with it.
RECIPE_VERSION = "1"
JPEG_QUALITY = 82
# EXIF orientations that turn the picture a quarter: width and height swap when applied
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Derivative:
    """One derived file: what it is made from, for which slot, and its size."""

    source: Path
    slot: Slot
    name: str
    width: int
    height: int
    format: str  # "JPEG" or "PNG"
    # (left, top, right, bottom) of the original, upright, that the slot's shape keeps
    crop: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Original:
    """What the layout needs to know about an editor's image file."""

    path: Path
    width: int
    height: int
    format: str
    animated: bool = False
    alpha: bool = False


def read_original(path: Path) -> Original | None:
    """The upright size and format of an image file; None if Pillow cannot read it."""
    try:
        with Pillow.open(path) as img:
            width, height = img.size
            if img.getexif().get(_ORIENTATION_TAG) in _QUARTER_TURNS:
                width, height = height, width
            animated = bool(getattr(img, "is_animated", False))
            return Original(path, width, height, str(img.format), animated, _has_alpha(img))
    except (OSError, UnidentifiedImageError, ValueError, Pillow.DecompressionBombError):
        return None


class ImageSet:
    """The derivatives of one issue's images; :meth:`url` is what the templates show."""

    def __init__(
        self, settings: Settings, derivatives: Mapping[tuple[str, str], Derivative] | None = None
    ) -> None:
        self.settings = settings
        self.derivatives = dict(derivatives or {})

    def get(self, image: Image, slot: Slot) -> Derivative | None:
        return self.derivatives.get((image.src, slot.name))

    def url(self, image: Image, slot: Slot) -> str:
        """The derivative's public URL, or the original's when there is none (remote images)."""
        derived = self.get(image, slot)
        if derived is not None:
            return urls.absolute(
                self.settings.publication.base_url, f"{urls.DERIVED_IMAGES}/{derived.name}"
            )
        return original_url(image.src, self.settings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageSet) and other.derivatives == self.derivatives

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.derivatives)))


def original_url(src: str, settings: Settings) -> str:
    """The absolute URL of an issue image: ``images/x.png`` -> ``{base_url}/images/x.png``."""
    return urls.issue_file_url(settings.publication.base_url, src)


def plan_images(issue: Issue, settings: Settings) -> ImageSet:
    """The derivatives the issue needs, named and sized, without writing anything.

    Remote images, files Pillow cannot read and animated GIFs (resizing would keep one frame)
    get no derivative: the email shows the original.
    """
    derivatives: dict[tuple[str, str], Derivative] = {}
    digests: dict[Path, bytes] = {}
    for image, slot in displayed_images(issue):
        if image.src.startswith(("http://", "https://")) or (image.src, slot.name) in derivatives:
            continue
        path = settings.issues_dir / image.src
        original = read_original(path)
        if original is None or original.animated:
            continue
        if path not in digests:
            digests[path] = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
        derivatives[(image.src, slot.name)] = _plan(original, slot, digests[path])
    return ImageSet(settings, derivatives)


def _plan(original: Original, slot: Slot, digest: bytes) -> Derivative:
    crop = None
    width, height = original.width, original.height
    if slot.aspect is not None:
        aspect_w, aspect_h = slot.aspect
        # the largest box of the slot's shape, centred on the picture
        box_w = min(width, round(height * aspect_w / aspect_h))
        box_h = min(height, round(box_w * aspect_h / aspect_w))
        left, top = (width - box_w) // 2, (height - box_h) // 2
        crop = (left, top, left + box_w, top + box_h)
        width, height = box_w, box_h
    target = min(slot.pixels, width)  # never enlarged: that only adds bytes
    target_height = max(1, round(height * target / width))
    # a photograph stays a JPEG; a PNG (flat colours, text, transparency) stays lossless
    lossless = original.format in ("PNG", "GIF") or original.alpha
    kind = "PNG" if lossless else "JPEG"
    recipe = f"{RECIPE_VERSION}:{slot.name}:{target}x{target_height}:{crop}:{kind}"
    name_digest = hashlib.blake2b(digest + recipe.encode(), digest_size=6).hexdigest()
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in original.path.stem)[:60]
    suffix = ".jpg" if kind == "JPEG" else ".png"
    return Derivative(
        source=original.path,
        slot=slot,
        name=f"{stem}-{target}w-{name_digest}{suffix}",
        width=target,
        height=target_height,
        format=kind,
        crop=crop,
    )


def write_derivatives(images: ImageSet) -> list[Path]:
    """Make every derivative of ``images`` that is not on disk yet; the files written."""
    directory = images.settings.derived_images_dir
    written: list[Path] = []
    for derivative in _unique(images.derivatives.values()):
        target = directory / derivative.name
        if target.is_file():
            continue
        directory.mkdir(parents=True, exist_ok=True)
        _make(derivative, target)
        written.append(target)
    return written


def derive_images(issue: Issue, settings: Settings) -> ImageSet:
    """Plan and make the issue's derivatives; what the renderer needs to link them."""
    images = plan_images(issue, settings)
    for path in write_derivatives(images):
        log.info("made %s", path)
    return images


def _unique(derivatives: Iterable[Derivative]) -> list[Derivative]:
    return list({d.name: d for d in derivatives}.values())


def _make(derivative: Derivative, target: Path) -> None:
    with Pillow.open(derivative.source) as opened:
        icc = opened.info.get("icc_profile")
        img = ImageOps.exif_transpose(opened)
        if derivative.crop is not None:
            img = img.crop(derivative.crop)
        if derivative.format == "JPEG":
            img = img.convert("RGB")
        elif img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        if img.size != (derivative.width, derivative.height):
            img = img.resize((derivative.width, derivative.height), Pillow.Resampling.LANCZOS)
        options: dict[str, object] = {"optimize": True}
        if derivative.format == "JPEG":
            options.update(quality=JPEG_QUALITY, progressive=True)
        if icc:
            options["icc_profile"] = icc
        # written beside the target and renamed: a reader never sees half a file, and two
        # processes making the same derivative both end with a whole one
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                img.save(fh, derivative.format, **options)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _has_alpha(img: Pillow.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
