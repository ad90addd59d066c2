"""Packaging hook: the wheel carries the default theme and the sample issue as package data.

The repository keeps one copy of each, at the top (``templates/`` and ``issues/``), where
editors and the tests use them; ``build_py`` copies them into the built package as
``newsletter/theme/`` and ``newsletter/sample/``. An editable install reads them in place
(``newsletter.templating.packaged``). Everything else is declared in ``pyproject.toml``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# the sample a new publication starts from (newsletter.scaffold.SAMPLE_ISSUE), with the
# images it shows and the logo the new newsletter.toml points at
SAMPLE_ISSUE = "2026-11-20-flood-barrier-vote.md"
_IMAGE = re.compile(r"""images/[^\s)"']+""")


def _theme_files() -> list[tuple[Path, str]]:
    theme = HERE / "templates"
    return [
        (path, "theme/" + path.relative_to(theme).as_posix())
        for path in sorted(theme.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def _sample_files() -> list[tuple[Path, str]]:
    issues = HERE / "issues"
    issue = issues / SAMPLE_ISSUE
    images = {"images/logo.png", *_IMAGE.findall(issue.read_text(encoding="utf-8"))}
    files = [(issue, "sample/" + SAMPLE_ISSUE)]
    files += [(issues / name, "sample/" + name) for name in sorted(images)]
    return files


class BuildWithTheme(build_py):
    """``build_py`` that also copies the theme and the sample into the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "newsletter"
        for source, name in [*_theme_files(), *_sample_files()]:
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        target = Path(self.build_lib) / "newsletter"
        extra = [str(target / name) for _, name in [*_theme_files(), *_sample_files()]]
        return [*super().get_outputs(include_bytecode), *extra]


setup(cmdclass={"build_py": BuildWithTheme})
