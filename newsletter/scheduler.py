"""Weekly automated sends: ``python scheduler.py [--once] [--send-stale] [--config PATH]`` in
a checkout, ``newsletter-scheduler`` (the same options) where the package is installed.

A thin entry point: it loads the settings once, wires the real database and SMTP transport
and hands over to :mod:`newsletter.autosend`. Without ``--once`` it runs APScheduler until
SIGTERM or SIGINT, then lets a running send finish its current work and exits 0.
See docs/scheduler.md.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from newsletter.autosend import build_scheduler, run_due
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.logfmt import KeyValueFormatter, log_event
from newsletter.slots import list_schedules
from newsletter.store.database import open_current


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.now is not None and not args.once:
        parser.error("--now only goes with --once; the long-running scheduler uses the real clock")
    _configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
        list_schedules(settings)  # a malformed schedule stops us here, before any work
        engine = open_current(settings.database_url)
        try:
            if args.once:
                now = args.now or datetime.now(UTC)
                outcome = run_due(settings, engine, now=now, send_stale=args.send_stale)
                log_event(
                    "run_finished",
                    sent=len(outcome.sent),
                    skipped=len(outcome.skipped),
                    lock_busy=outcome.lock_busy,
                    errors=len(outcome.errors),
                )
                return 0 if outcome.ok else 1
            return _run_forever(settings, engine, send_stale=args.send_stale)
        finally:
            engine.dispose()
    except NewsletterError as exc:
        log_event("error", level=logging.ERROR, error=str(exc))
        return 1
    except OperationalError as exc:
        log_event("error", level=logging.ERROR, error=f"cannot use the database: {exc.orig}")
        return 1
    except Exception as exc:
        # a bug or an unreachable database: say so in one event, with the traceback for a
        # report; the ledger makes the next run safe
        log_event("crashed", level=logging.CRITICAL, exc_info=True, error=repr(exc))
        return 2


def _run_forever(settings: Settings, engine: Engine, *, send_stale: bool) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    scheduler = build_scheduler(settings, engine, send_stale=send_stale)
    scheduler.resume()
    log_event(
        "started",
        lists=",".join(slug for slug, s in list_schedules(settings).items() if s) or "none",
        grace_minutes=settings.scheduler.misfire_grace_minutes,
        send_stale=send_stale,
    )
    for job in scheduler.get_jobs():
        log_event("next_run", job=job.id, at=job.next_run_time)
    stop.wait()
    # wait=True: a send in progress finishes (or reaches the ledger's next safe point) first
    scheduler.shutdown(wait=True)
    log_event("stopped")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Send each list's weekly issue at its slot (see docs/scheduler.md).",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run whatever is due now and exit (for cron, CI and tests)",
    )
    parser.add_argument(
        "--send-stale",
        action="store_true",
        help="also send issues whose slot passed longer ago than the misfire grace",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="path to newsletter.toml (default: $NEWSLETTER_CONFIG or ./newsletter.toml)",
    )
    parser.add_argument(
        "--now",
        type=_aware_time,
        default=None,
        metavar="ISO-TIME",
        help="with --once: act as if the clock read this (replays and tests)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log lines to print (default: info)",
    )
    return parser


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a UTC offset, e.g. 2026-11-27T13:05+02:00")
    return moment


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler narrates every job at INFO; our own events already say what happened
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def run() -> None:
    """The ``newsletter-scheduler`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
