"""Image derivatives: twice the slot, cropped for cards, recompressed, originals untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image as PILImage
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.images import derive_images, plan_images, read_original, write_derivatives
from newsletter.issues import load_issue
from newsletter.layout import SLOTS
from newsletter.rendering import Renderer
from newsletter.web.app import create_app

SNOW = "2026-12-11-first-snow.md"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_derivatives_are_twice_their_slot(settings: Settings) -> None:
    originals = digests(settings.issues_dir / "images")
    issue = load_issue(settings.issues_dir / SNOW, settings)
    images = derive_images(issue, settings)
    sizes = {}
    for (src, slot), derived in images.derivatives.items():
        with PILImage.open(settings.derived_images_dir / derived.name) as made:
            assert made.size == (derived.width, derived.height)
            sizes[(src, slot)] = made.size
    assert sizes[("images/snow-road.png", "hero")] == (1200, 600)
    assert sizes[("images/gauge-board.png", "figure")] == (1088, 600)
    assert sizes[("images/baker.png", "spotlight")] == (424, 424)
    # card thumbnails: 2 x 264 px, cropped to 3:2 from the 600 x 400 originals
    for thumb in ("images/gauge.png", "images/gritter.png", "images/choir.png"):
        assert sizes[(thumb, "card")] == (528, 352)
    # the editor's files are read, never written
    assert digests(settings.issues_dir / "images") == originals
    assert not (settings.issues_dir / "images" / "_derived").exists()


def test_derivatives_are_never_enlarged_and_drop_metadata(settings: Settings) -> None:
    photo = settings.issues_dir / "images" / "small.jpg"
    exif = PILImage.Exif()
    exif[0x0112] = 6  # shot on its side: shown 300 wide, 400 high
    exif[0x010F] = "Camera maker"  # metadata a photo carries (GPS, too, on a phone)
    PILImage.new("RGB", (400, 300), "#884422").save(photo, "JPEG", quality=95, exif=exif)
    (settings.issues_dir / "2026-11-20-small.md").write_text(
        "---\ntitle: T\ndate: 2026-11-20\nauthors: [A]\n---\n\n"
        "## S\n\n![A wall](images/small.jpg)\n",
        encoding="utf-8",
    )
    issue = load_issue(settings.issues_dir / "2026-11-20-small.md", settings)
    (derived,) = derive_images(issue, settings).derivatives.values()
    assert (derived.width, derived.height, derived.format) == (300, 400, "JPEG")
    with PILImage.open(settings.derived_images_dir / derived.name) as made:
        assert made.format == "JPEG"
        assert made.size == (300, 400)  # turned upright, not enlarged to 1088
        assert not made.getexif()


def test_a_changed_original_gets_a_new_name_and_made_files_are_reused(
    settings: Settings,
) -> None:
    issue = load_issue(settings.issues_dir / SNOW, settings)
    first = derive_images(issue, settings)
    assert write_derivatives(plan_images(issue, settings)) == []  # nothing made twice
    hero = settings.issues_dir / "images" / "snow-road.png"
    PILImage.new("RGB", (1400, 700), "#ffffff").save(hero)
    second = plan_images(issue, settings)
    key = ("images/snow-road.png", "hero")
    assert first.derivatives[key].name != second.derivatives[key].name
    assert read_original(hero) is not None


def test_email_links_the_derivatives_and_serve_serves_them(
    settings: Settings, engine: object
) -> None:
    issue = load_issue(settings.issues_dir / SNOW, settings)
    images = derive_images(issue, settings)
    html = Renderer(settings).render(issue, images).html
    hero = images.derivatives[("images/snow-road.png", "hero")]
    url = f"{settings.publication.base_url}/images/_derived/{hero.name}"
    assert f'src="{url}"' in html
    assert f'width="{SLOTS.hero.width}"' in html
    client = TestClient(create_app(settings, engine=engine), base_url=settings.publication.base_url)  # type: ignore[arg-type]
    response = client.get(f"/images/_derived/{hero.name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert "immutable" in response.headers["cache-control"]
    assert response.content == (settings.derived_images_dir / hero.name).read_bytes()
    assert client.get("/images/snow-road.png").status_code == 200  # the original too
    assert client.get("/images/_derived/..%2fnewsletter.toml").status_code == 404
