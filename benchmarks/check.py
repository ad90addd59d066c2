"""Check benchmark: `newsletter check` and `build` on issues of 1k, 5k, 20k sections and 2 MB.

    python benchmarks/check.py [--sizes 1000,5000,20000] [--repeat 3]

Each issue is generated into a temporary copy of the project: sections all headed ``## News``
(the shape that was quadratic: every heading searched ``news-1``, ``news-2``, ... from the
start) with a short paragraph and a link each, plus one file filled with such sections up to
just under the 2 MB cap. For each it prints the least wall and CPU time of ``--repeat`` runs of
``check_issue`` and of the ``build`` command (which checks first, and refuses these: they are
all far past Gmail's clip), the check's CPU time per section, and that over the smallest
size's: 1.0 or less everywhere means linear. CPU time is the figure to read when other work
shares the cores. Reference in the same run: markdown-it parsing the same text alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.checks import check_issue  # noqa: E402
from newsletter.cli import main as cli  # noqa: E402
from newsletter.config import Settings, load_settings  # noqa: E402
from newsletter.issues import MAX_ISSUE_BYTES  # noqa: E402
from newsletter.markup import markdown_parser  # noqa: E402

FRONT = "---\ntitle: Benchmark\ndate: 2026-11-20\nauthors: [Ana Brook]\nstatus: ready\n---\n\n"
SECRET = "benchmark-only-key-" + "x" * 32


def section(number: int) -> str:
    return f"## News\n\nParagraph {number} with [a link](https://example.org/{number}).\n\n"


def issue_text(sections: int) -> str:
    return FRONT + "".join(section(i) for i in range(sections))


def filled_text(limit: int) -> tuple[str, int]:
    """As many sections as fit under ``limit`` bytes, and how many that is."""
    parts = [FRONT]
    size, count = len(FRONT), 0
    while size + len(block := section(count)) <= limit:
        parts.append(block)
        size += len(block)
        count += 1
    return "".join(parts), count


def least(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The least wall and CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        func()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def project(directory: Path) -> Settings:
    shutil.copy(ROOT / "newsletter.toml", directory / "newsletter.toml")
    shutil.copytree(ROOT / "templates", directory / "templates")
    shutil.copytree(ROOT / "issues" / "images", directory / "issues" / "images")
    return load_settings(directory / "newsletter.toml", environ={"NEWSLETTER_SECRET_KEY": SECRET})


def measure(settings: Settings, text: str, repeat: int) -> tuple[float, ...]:
    """check wall and CPU, build wall and CPU, markdown-it CPU: seconds, least of ``repeat``."""
    path = settings.issues_dir / "2026-11-20-benchmark.md"
    path.write_text(text, encoding="utf-8")
    wall, cpu = least(lambda: check_issue(path, settings), repeat)
    command = ["--config", str(settings.source), "build", str(path)]
    environ = {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_CONFIG": None}
    build, build_cpu = least(lambda: CliRunner().invoke(cli, command, env=environ), repeat)
    _, reference = least(lambda: markdown_parser().parse(text), repeat)
    return wall, cpu, build, build_cpu, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        settings = project(Path(tmp))
        cases = [(f"{n:,} sections", issue_text(n), n) for n in sizes]
        text, count = filled_text(MAX_ISSUE_BYTES)
        cases.append((f"2 MB ({count:,} sections)", text, count))
        check_issue(settings.issues_dir / "missing.md", settings)  # imports, warm caches
        print(f"check benchmark: least of {args.repeat} runs; load {os.getloadavg()[0]:.1f}")
        header = (
            f"{'issue':<24} {'KB':>6} {'check s':>8} {'cpu s':>6} {'µs/sec':>7} {'ratio':>6}"
            f" {'build s':>8} {'cpu s':>6} {'md-it cpu s':>11}"
        )
        print(header)
        print("-" * len(header))
        base: float | None = None
        for label, text, count in cases:
            wall, cpu, build, build_cpu, reference = measure(settings, text, args.repeat)
            per = cpu / count * 1e6
            base = base or per
            print(
                f"{label:<24} {len(text.encode()) // 1024:>6} {wall:>8.2f} {cpu:>6.2f}"
                f" {per:>7.0f} {per / base:>6.2f} {build:>8.2f} {build_cpu:>6.2f}"
                f" {reference:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
