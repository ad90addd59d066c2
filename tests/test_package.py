"""The package carries its theme; a publication's ``templates_dir`` overrides it file by file.

The slow test at the end is the proof from outside: it builds the wheel, installs it into a
fresh virtualenv in a temporary folder, runs ``newsletter new pub && cd pub && newsletter demo``
there and sees an override of one theme template in ``newsletter build``.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from newsletter.scaffold import SAMPLE_ISSUE, sample_dir
from newsletter.templating import Templates, environment, theme_dir
from newsletter.web.app import create_app
from tests.conftest import REPO, FakeClock

MARK = "override-mark-5f3a"


def override(folder: Path, relative: str, old: str, new: str) -> Path:
    """Write the theme's ``relative`` into ``folder`` with ``old`` replaced by ``new``."""
    text = (REPO / "templates" / relative).read_text(encoding="utf-8")
    assert old in text, (relative, old)
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.fixture
def own(tmp_path: Path) -> Path:
    """An empty override folder of the publication's own."""
    folder = tmp_path / "own-templates"
    folder.mkdir()
    return folder


def test_in_a_checkout_the_theme_is_the_repositorys_templates() -> None:
    # one copy in git: setup.py copies templates/ into the wheel, nothing else holds a copy
    assert theme_dir() == REPO / "templates"
    assert sample_dir() == REPO / "issues"
    assert not (REPO / "newsletter" / "theme").exists()
    assert not (REPO / "newsletter" / "sample").exists()


def test_setup_py_packages_the_sample_newsletter_new_copies() -> None:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    names = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    sample = names["SAMPLE_ISSUE"]
    assert isinstance(sample, ast.Constant)
    assert sample.value == SAMPLE_ISSUE
    assert (REPO / "issues" / SAMPLE_ISSUE).is_file()


def test_an_email_partial_is_overridden_alone(settings: Settings, own: Path) -> None:
    # issue.mjml.j2 comes from the theme and includes head.css.j2, which comes from here
    sample = load_issue(settings.issues_dir / SAMPLE_ISSUE, settings)
    before = Renderer(settings).render(sample)
    override(own, "email/head.css.j2", "", f".{MARK} {{ color: #123456; }}\n")
    after = Renderer(dataclasses.replace(settings, templates_dir=own)).render(sample)
    assert MARK not in before.html
    assert MARK in after.html
    assert after.text == before.text


def test_a_missing_override_folder_is_the_theme(settings: Settings, tmp_path: Path) -> None:
    sample = load_issue(settings.issues_dir / SAMPLE_ISSUE, settings)
    bare = dataclasses.replace(settings, templates_dir=tmp_path / "absent")
    assert Renderer(bare).render(sample).html == Renderer(settings).render(sample).html


def test_a_broken_override_is_named_in_the_error(settings: Settings, own: Path) -> None:
    path = override(own, "email/issue.txt.j2", "{%", "{% endfor %}{%")
    with pytest.raises(RenderError, match=rf"template {path}: line \d+"):
        Renderer(dataclasses.replace(settings, templates_dir=own))


@pytest.mark.parametrize(
    ("kind", "relative"),
    [
        (Templates.EMAIL, "issue.mjml.j2"),
        (Templates.PAGES, "web/subscribe.html"),
        (Templates.PREVIEW, "preview/index.html"),
        (Templates.ARCHIVE, "archive/index.html"),
        (Templates.ADMIN, "login.html"),
    ],
)
def test_every_kind_loads_from_the_override_then_the_theme(
    settings: Settings, own: Path, kind: Templates, relative: str
) -> None:
    env = environment(dataclasses.replace(settings, templates_dir=own), kind)
    theme = env.loader.get_source(env, relative) if env.loader else None
    assert theme is not None
    assert Path(theme[1] or "").is_relative_to(REPO / "templates")
    mine = own / (
        "email/" if kind is Templates.EMAIL else "admin/" if kind is Templates.ADMIN else ""
    )
    (mine / relative).parent.mkdir(parents=True, exist_ok=True)
    (mine / relative).write_text(MARK, encoding="utf-8")
    assert env.get_template(relative).render() == MARK


@pytest.mark.parametrize(
    ("relative", "block", "url", "status"),
    [
        ("web/not_found.html", "{% block content %}", "/no-such-page", 404),
        ("web/subscribe.html", "{% block content %}", "/subscribe", 200),
        ("archive/not_found.html", "{% block content %}", "/archive/no-such-issue", 404),
        ("admin/login.html", "{% block main %}", "/admin/login", 200),
    ],
)
def test_the_sites_pages_take_an_override(
    web_settings: Settings,
    engine: Engine,
    clock: FakeClock,
    own: Path,
    relative: str,
    block: str,
    url: str,
    status: int,
) -> None:
    override(own, relative, block, f"{block}<p>{MARK}</p>")
    app = create_app(
        dataclasses.replace(web_settings, templates_dir=own), engine=engine, clock=clock
    )
    with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as client:
        page = client.get(url)
    assert page.status_code == status, page.text
    assert MARK in page.text
    # the rest of the page is the theme's: its base template still frames the override
    assert "<html" in page.text


# -- the proof: the wheel, installed outside this repository ---------------------------------

# what is not the source: copied trees would only slow the build (or leak stale build output)
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "var"
)


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_wheel_installed_in_a_fresh_venv_makes_a_working_publication(tmp_path: Path) -> None:
    # offline throughout: no index, no build isolation; the dependencies are this venv's
    quiet = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    dist = tmp_path / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(source),
        ],
        cwd=tmp_path,
        env=quiet,
    )
    (wheel,) = dist.glob("newsletter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    theme = {
        f"newsletter/theme/{p.relative_to(REPO / 'templates').as_posix()}"
        for p in (REPO / "templates").rglob("*")
        if p.is_file()
    }
    assert theme <= names
    assert f"newsletter/sample/{SAMPLE_ISSUE}" in names
    assert "newsletter/sample/images/hero-river.png" in names
    assert any(n.startswith("newsletter/store/migrations/versions/0001") for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=quiet)
    python = venv / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=tmp_path,
            env=quiet,
        ).strip()
    )
    # the dependencies from this venv, after the fresh venv's own site-packages
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz-newsletter-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
        env=quiet,
    )

    work = tmp_path / "work"
    work.mkdir()
    env = {**quiet, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    where = run(
        [
            str(python),
            "-c",
            "import newsletter.templating as t; print(t.__file__); print(t.theme_dir())",
        ],
        cwd=work,
        env=env,
    ).split()
    assert all(Path(p).is_relative_to(site) for p in where), where

    newsletter = str(venv / "bin" / "newsletter")
    run([newsletter, "new", "pub", "--name", "The Valley Weekly"], cwd=work, env=env)
    pub = work / "pub"
    out = run([newsletter, "demo"], cwd=pub, env=env)
    assert "5 message(s) delivered to the sink" in out
    assert len(list((pub / "var" / "maildir" / "new").iterdir())) == 5
    run([newsletter, "check"], cwd=pub, env=env)
    # the weekly scheduler is installed too (a checkout's python scheduler.py)
    scheduled = run([str(venv / "bin" / "newsletter-scheduler"), "--once"], cwd=pub, env=env)
    assert "error" not in scheduled.lower(), scheduled

    # one theme template overridden in pub/templates/: the build shows it, and only it
    installed = Path(where[1]) / "email" / "issue.txt.j2"
    mine = pub / "templates" / "email" / "issue.txt.j2"
    mine.parent.mkdir()
    mine.write_text("The Valley Weekly, printed on recycled pixels.\n" + installed.read_text())
    run([newsletter, "build"], cwd=pub, env=env)
    slug = SAMPLE_ISSUE.removesuffix(".md").split("-", 3)[3]
    text = (pub / "build" / f"{slug}.txt").read_text(encoding="utf-8")
    html = (pub / "build" / f"{slug}.html").read_text(encoding="utf-8")
    assert text.startswith("The Valley Weekly, printed on recycled pixels.")
    assert "recycled pixels" not in html
    assert "The Valley Weekly" in html
