"""Structured log lines for journald: one ``key=value`` (logfmt) line per event.

The scheduler logs through :func:`log_event`; :class:`KeyValueFormatter` writes every record,
its own and other libraries', as one line with the time and level first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime

log = logging.getLogger("newsletter.scheduler")

_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
# one event is one line, whatever an error message or an issue title contains
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def format_kv(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs, values quoted when they hold spaces or quotes (logfmt style)."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat(timespec="seconds")
        text = str(value)
        if not _BARE.match(text):
            text = '"' + text.translate(_ESCAPES) + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_event(
    event: str,
    context: Mapping[str, object] | None = None,
    *,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields: object,
) -> None:
    """One structured line: ``event=sent list=weekly issue=river-week sent=120``."""
    kv = {"event": event, **(context or {}), **fields}
    log.log(level, "%s", format_kv(kv), extra={"kv": kv}, exc_info=exc_info)


class KeyValueFormatter(logging.Formatter):
    """journald-friendly lines: ``time=... level=info event=... list=... issue=...``.

    Lines from other libraries (APScheduler, SQLAlchemy) keep their text as a quoted ``msg``.
    """

    def format(self, record: logging.LogRecord) -> str:
        head = {
            "time": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelname.lower(),
        }
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            line = format_kv({**head, **kv})
        else:
            line = format_kv({**head, "logger": record.name, "msg": record.getMessage()})
        if record.exc_info:
            line += " " + format_kv({"exc": self.formatException(record.exc_info)})
        return line
