"""Render benchmark: per-stage medians for each sample issue, against references in the same run.

    python benchmarks/render.py [--repeat 50] [ISSUE...]

Stages: parse (front matter + Markdown -> model), jinja (model -> MJML), mjml (MJML -> HTML,
mjml-python), inline (premailer), text (plain-text template). References measured in the same
process on the same issue: markdown-it parsing the file alone, and mjml-python compiling the
issue's MJML alone -- the least any Markdown-to-MJML pipeline must spend. The goal is a whole
issue in under 50 ms warm, so the preview feels instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import premailer
from mjml import mjml2html

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import load_settings  # noqa: E402
from newsletter.issues import parse_issue  # noqa: E402
from newsletter.markup import markdown_parser  # noqa: E402
from newsletter.rendering import Renderer  # noqa: E402


def medians_ms(funcs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median ms per function, run round-robin so a busy machine slows them all alike."""
    for func in funcs.values():
        func()  # warm: caches, lazily built parsers
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def naive_inline(html: str, css: str) -> str:
    """premailer the obvious way: every <style> in the document inlined onto every element."""
    document = html.replace("</head>", f"<style>{css}</style></head>", 1)
    return str(
        premailer.Premailer(
            document,
            allow_network=False,
            keep_style_tags=True,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("issues", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    environ = {"NEWSLETTER_SECRET_KEY": "benchmark-only-key-0123456789", **os.environ}
    settings = load_settings(ROOT / "newsletter.toml", environ=environ)
    paths = args.issues or sorted(settings.issues_dir.glob("*.md"))

    start = time.perf_counter()
    renderer = Renderer(settings)
    first = parse_issue(paths[0].read_text(encoding="utf-8"), path=paths[0], settings=settings)
    assert first.issue is not None
    renderer.render(first.issue)
    cold = (time.perf_counter() - start) * 1000

    print(f"render benchmark: median of {args.repeat} warm runs per stage (interleaved), in ms")
    print(f"first render in this process (templates, CSS parse, caches): {cold:.1f} ms\n")
    header = (
        f"{'issue':<26}{'parse':>7}{'jinja':>7}{'mjml':>7}{'inline':>8}{'text':>7}"
        f"{'total':>8}{'render()':>10}{'md-it':>7}{'x md':>6}{'x mjml':>8}{'naive':>7}"
    )
    print(header)
    print("-" * len(header))
    for path in paths:
        text = path.read_text(encoding="utf-8")
        result = parse_issue(text, path=path, settings=settings)
        if result.issue is None:
            print(f"{path.name}: does not parse; run newsletter check")
            continue
        issue = result.issue
        context = renderer.context(issue)
        mjml_source = renderer.render_mjml(issue, context)
        compiled = renderer.compile_mjml(mjml_source)
        md = markdown_parser()

        m = medians_ms(
            {
                "parse": partial(parse_issue, text, path=path, settings=settings),
                "jinja": partial(renderer.render_mjml, issue),
                "mjml": partial(renderer.compile_mjml, mjml_source),
                "inline": partial(renderer.inline_css, compiled),
                "text": partial(renderer.render_text, issue, context),
                "whole": partial(renderer.render, issue),
                "md": partial(md.parse, text),
                "ref_mjml": partial(mjml2html, mjml_source, fonts={}),
                "naive": partial(naive_inline, compiled, renderer.css),
            },
            args.repeat,
        )
        parse, jinja, mjml, inline, plain = (
            m[k] for k in ("parse", "jinja", "mjml", "inline", "text")
        )
        whole, ref_md, ref_mjml, naive = m["whole"], m["md"], m["ref_mjml"], m["naive"]
        total = parse + jinja + mjml + inline + plain
        print(
            f"{issue.slug:<26}{parse:7.2f}{jinja:7.2f}{mjml:7.2f}{inline:8.2f}{plain:7.2f}"
            f"{total:8.2f}{whole + parse:10.2f}{ref_md:7.2f}{total / ref_md:6.1f}"
            f"{total / ref_mjml:8.1f}{naive:7.2f}"
        )
    print(
        "\ntotal = sum of stage medians; render() = parse + Renderer.render end to end;"
        "\nx md / x mjml = total over markdown-it parsing the file / mjml-python compiling alone."
        "\nnaive = premailer over the whole document, MJML's head styles included (what"
        "\n        Renderer.inline_css avoids), to compare with the inline column."
    )


if __name__ == "__main__":
    main()
