"""CSV import and export of subscribers: streamed, batched, idempotent, nothing valid lost.

Import checks the whole file decodes first (:mod:`newsletter.store.csvfile`: UTF-8 with or
without BOM, a line that is not UTF-8 read as Windows-1252 when that reads as text), finds the
delimiter and the columns from the header (ours and the common exports: Mailchimp, Substack,
Buttondown, Ghost, listmonk), and writes in batches with ``INSERT ... ON CONFLICT DO NOTHING``
and set-based subscription upserts, one transaction per batch, so memory stays flat and an
interrupted import can simply be run again. Every row that is not imported is handed to
``on_reject`` with its line(s) and the reason.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from sqlalchemy import Connection, Engine

from newsletter.addresses import clean_name, email_hash, normalize_email
from newsletter.consent import Authority, Verdict, decide
from newsletter.errors import ImportFileError, InvalidAddressError
from newsletter.states import SubscriptionStatus
from newsletter.store.csvfile import (
    ADDRESS_LIKE,
    Lines,
    Record,
    check_encoding,
    records,
    refuse_utf16,
)
from newsletter.store.schema import subscribers, subscriptions, suppressions
from newsletter.store.subscribers import iter_subscribers

# header names as _key() folds them; Mailchimp says "Email Address", Ghost and listmonk "email"
EMAIL_COLUMNS = (
    "email",
    "e-mail",
    "email address",
    "e-mail address",
    "email_address",
    "emailaddress",
    "e_mail",
    "mail",
)
NAME_COLUMNS = ("name", "full name", "full_name", "fullname", "display name", "display_name")
# Mailchimp and most spreadsheets split the name; without a name column they make it
FIRST_NAME_COLUMNS = ("first name", "first_name", "firstname", "given name", "fname")
LAST_NAME_COLUMNS = ("last name", "last_name", "lastname", "surname", "family name", "lname")
# a JSON object of attributes in one cell (listmonk's "attributes", Buttondown's "metadata")
JSON_COLUMNS = ("attributes", "metadata")
# written by export; read back they describe state, not attributes
EXPORT_ONLY_COLUMNS = ("subscribed_at", "confirmed_at", "unsubscribed_at")
# columns in which an export says a row is not (or no longer) a subscriber: such a row is
# rejected, never imported as confirmed (ours and listmonk's "status", Buttondown's
# "subscriber_type", Ghost's "subscribed_to_emails", Substack's "email_disabled", and the
# times in Mailchimp's unsubscribed and cleaned exports); a value not listed means subscribed
NOT_SUBSCRIBED: dict[str, frozenset[str] | None] = {
    "status": frozenset(
        {
            "unsubscribed",
            "unconfirmed",
            "pending",
            "blocklisted",
            "blacklisted",
            "disabled",
            "cleaned",
            "bounced",
            "complained",
            "removed",
        }
    ),
    "subscriber_type": frozenset({"unactivated", "unsubscribed", "spammy", "removed", "disabled"}),
    "subscribed_to_emails": frozenset({"false", "0", "no"}),
    "email_disabled": frozenset({"true", "1", "yes"}),
    # any value: a time
    "unsub_time": None,
    "clean_time": None,
}
# an attribute whose name would be read as one of the columns above is exported under this
# prefix, and read back without it
ATTRIBUTE_PREFIX = "attribute:"
_RESERVED = frozenset(
    (
        *EMAIL_COLUMNS,
        *NAME_COLUMNS,
        *FIRST_NAME_COLUMNS,
        *LAST_NAME_COLUMNS,
        *JSON_COLUMNS,
        *EXPORT_ONLY_COLUMNS,
        *NOT_SUBSCRIBED,
    )
)
DELIMITERS = (",", ";", "\t", "|")
BATCH_SIZE = 5000
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# rejects of the file's shape (an open quote, an oversized value) listed in the summary
_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str
    row: Sequence[str]
    # the last line of a record over several lines
    end: int | None = None

    @property
    def lines(self) -> str:
        """``12`` or ``12-15``: how the rejects file and the summary name the row."""
        return f"{self.line}-{self.end}" if self.end and self.end > self.line else str(self.line)


@dataclass
class ImportReport:
    """What an import did, for the summary line and the tests."""

    rows: int = 0
    added: int = 0
    subscribed: int = 0
    already: int = 0
    duplicates: int = 0
    rejected: int = 0
    blank: int = 0
    delimiter: str = ","
    header: tuple[str, ...] = ()
    # lines read as Windows-1252 because they were not valid UTF-8
    fallback_lines: list[int] = field(default_factory=list)
    fallback_count: int = 0
    # rows rejected for the file's shape (a quote left open, a value over 128 KiB): the
    # summary names them, since rows next to them were read differently than they look
    problems: list[Reject] = field(default_factory=list)
    problem_count: int = 0


class _Row(NamedTuple):
    """One valid row on its way to the database (a tuple: there are 100,000 of them)."""

    line: int
    email: str
    normalized: str
    name: str | None
    attributes: dict[str, str]
    raw: Sequence[str]


RejectSink = Callable[[Reject], None]
Progress = Callable[[int], None]


def import_csv(
    engine: Engine,
    path: Path,
    *,
    list_id: int,
    list_slug: str,
    on_reject: RejectSink,
    on_header: Callable[[Sequence[str]], None] | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
    source: str | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import ``path`` into ``list_id`` as confirmed subscriptions; see the module docstring.

    Existing subscribers keep their name and attributes; suppressed addresses, people who
    left ``list_id`` and rows the file marks as not subscribed are rejected, never
    (re-)subscribed. ``progress`` gets bytes read so far. ``encoding`` forces one encoding for
    the whole file instead of UTF-8 with fallback. A file that cannot be read is refused with
    :class:`ImportFileError` before anything is written.
    """
    now = now or datetime.now(UTC)
    source = source or f"import:{path.name}"
    report = ImportReport()
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot open: {exc.strerror}", path=path) from None
    with fh:
        refuse_utf16(fh, path)
        check_encoding(fh, encoding, path)
        lines = Lines(fh, encoding, path)
        header_line, header = _read_header(lines, delimiter, path, report)
        columns = _Columns.from_header(header, path, header_line)
        if on_header:
            on_header(header)

        def reject(record: Record) -> None:
            assert record.problem is not None
            item = Reject(record.line, record.problem, record.cells, record.end)
            report.rejected += 1
            report.problem_count += 1
            if len(report.problems) < _PROBLEMS_SHOWN:
                report.problems.append(item)
            on_reject(item)

        batch: list[_Row] = []
        for record in records(
            lines,
            first_line=header_line + 1,
            delimiter=report.delimiter,
            looks_like_row=columns.looks_like_row,
        ):
            cells = record.cells
            if record.problem is not None:
                report.rows += 1
                reject(record)
                continue
            if not "".join(cells).strip():
                report.blank += 1
                continue
            report.rows += 1
            parsed = columns.parse(cells, record.line, record.end, on_reject, report)
            if parsed is None:
                continue
            batch.append(parsed)
            if len(batch) >= batch_size:
                _write_batch(engine, batch, list_id, list_slug, source, now, on_reject, report)
                batch = []
                if progress:
                    progress(lines.position)
        if batch:
            _write_batch(engine, batch, list_id, list_slug, source, now, on_reject, report)
        if progress:
            progress(lines.position)
        report.fallback_lines = lines.fallback.lines
        report.fallback_count = lines.fallback.count
    return report


# --- the header -------------------------------------------------------------------------------


def _read_header(
    lines: Lines, delimiter: str | None, path: Path, report: ImportReport
) -> tuple[int, list[str]]:
    line = 0
    for text in lines:
        line += 1
        hint = text.strip()
        # Excel's "sep=;" first line names the delimiter
        if len(hint) == 5 and hint.lower().startswith("sep="):
            delimiter = delimiter or hint[4]
            continue
        if hint:
            break
    else:
        raise ImportFileError("is empty: expected a header row with an 'email' column", path=path)
    candidates: dict[str, list[str]] = {}
    for d in DELIMITERS:
        cells = _header_cells(text, d)
        if any(_key(c) in EMAIL_COLUMNS for c in cells):
            candidates[d] = cells
    if delimiter is not None:
        if len(delimiter) != 1:
            raise ImportFileError(f"delimiter must be one character, got {delimiter!r}", path=path)
        cells = _header_cells(text, delimiter)
        if not any(_key(c) in EMAIL_COLUMNS for c in cells):
            hint = ""
            if candidates:
                other = max(candidates, key=lambda d: len(candidates[d]))
                hint = (
                    f"; the file seems to use the {_DELIMITER_NAMES[other]}: --delimiter '{other}'"
                )
            raise ImportFileError(
                f"no 'email' column with delimiter {delimiter!r} in header "
                f"{text.strip()[:200]!r}{hint}",
                path=path,
                line=line,
            )
        report.delimiter = delimiter
        report.header = tuple(cells)
        return line, cells
    if not candidates:
        raise ImportFileError(
            f"the header row {text.strip()[:80]!r} has no 'email' column; the first row must "
            "name the columns, e.g. 'email,name'",
            path=path,
            line=line,
        )
    # the delimiter that splits the header into the most columns is the file's
    best = max(candidates, key=lambda d: len(candidates[d]))
    report.delimiter = best
    report.header = tuple(candidates[best])
    return line, candidates[best]


def _header_cells(text: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error:
        # a header cell over the field limit: no header of ours, and no crash either
        return []


def _key(column: str) -> str:
    return " ".join(column.strip().lower().split())


def _attribute_name(column: str) -> str:
    if column.lower().startswith(ATTRIBUTE_PREFIX):
        return column[len(ATTRIBUTE_PREFIX) :]
    return column.strip()


@dataclass(frozen=True)
class _Columns:
    email: int
    name: int | None
    first: int | None
    last: int | None
    json: tuple[tuple[int, str], ...]
    status: tuple[tuple[int, str, frozenset[str] | None], ...]
    extra: tuple[tuple[int, str], ...]
    width: int

    @classmethod
    def from_header(cls, header: list[str], path: Path, line: int) -> _Columns:
        keys = [_key(c) for c in header]

        def role(names: Sequence[str], what: str) -> int | None:
            found = [i for i, k in enumerate(keys) if k in names]
            if len(found) > 1:
                first, second = (keys[i] for i in found[:2])
                message = (
                    f"column {first!r} appears twice in the header"
                    if first == second
                    else f"the header has two {what} columns ({first!r} and {second!r})"
                )
                raise ImportFileError(message, path=path, line=line)
            return found[0] if found else None

        email = role(EMAIL_COLUMNS, "email")
        assert email is not None  # _read_header found one
        name = role(NAME_COLUMNS, "name")
        first = role(FIRST_NAME_COLUMNS, "first name")
        last = role(LAST_NAME_COLUMNS, "last name")
        if name is not None:
            # a full name wins; first and last names stay as attributes then
            first = last = None
        taken = {email, name, first, last}
        json_columns = tuple(
            (i, header[i].strip()) for i, k in enumerate(keys) if k in JSON_COLUMNS
        )
        status = tuple(
            (i, header[i].strip(), NOT_SUBSCRIBED[k])
            for i, k in enumerate(keys)
            if k in NOT_SUBSCRIBED
        )
        skipped = taken | {i for i, _ in json_columns} | {i for i, _, _ in status}
        extra = tuple(
            (i, _attribute_name(header[i]))
            for i, k in enumerate(keys)
            if i not in skipped and k and k not in EXPORT_ONLY_COLUMNS
        )
        seen: set[str] = set()
        for _, attribute in extra:
            if attribute in seen:
                raise ImportFileError(
                    f"column {attribute!r} appears twice in the header", path=path, line=line
                )
            seen.add(attribute)
        return cls(email, name, first, last, json_columns, status, extra, len(header))

    def looks_like_row(self, cells: Sequence[str]) -> bool:
        """Whether a line swallowed by a quoted value reads as a row of its own."""
        return (
            self.email < len(cells) <= self.width
            and ADDRESS_LIKE.fullmatch(cells[self.email].strip()) is not None
        )

    def parse(
        self, cells: list[str], line: int, end: int, on_reject: RejectSink, report: ImportReport
    ) -> _Row | None:
        def reject(reason: str) -> None:
            if end > line:
                reason += f" (this record spans lines {line}-{end}: an unbalanced quote?)"
            report.rejected += 1
            on_reject(Reject(line, reason, cells, end))

        if len(cells) > self.width and any(c.strip() for c in cells[self.width :]):
            reject(
                f"{len(cells)} fields but the header has {self.width} "
                "(a comma in an unquoted value?)"
            )
            return None
        email = cells[self.email].strip() if self.email < len(cells) else ""
        if not email:
            reject("no email address")
            return None
        for i, column, values in self.status:
            value = cells[i].strip() if i < len(cells) else ""
            if value and (values is None or value.lower() in values):
                reject(f"the file marks them as not subscribed ({column}: {value})")
                return None
        try:
            normalized = normalize_email(email)
        except InvalidAddressError as exc:
            reject(f"invalid address: {exc.reason}")
            return None
        width = len(cells)
        if self.name is not None:
            name = clean_name(cells[self.name]) if self.name < width else None
        elif self.first is not None or self.last is not None:
            parts = [cells[i] for i in (self.first, self.last) if i is not None and i < width]
            name = clean_name(" ".join(parts))
        else:
            name = None
        attributes: dict[str, str] = {}
        for i, column in self.json:
            if i < width and cells[i].strip():
                attributes.update(_json_attributes(cells[i], column))
        for i, column in self.extra:
            if i < width:
                value = cells[i].strip()
                if value:
                    attributes[column] = value
        return _Row(line, email, normalized, name, attributes, cells)


def _json_attributes(cell: str, column: str) -> dict[str, str]:
    """listmonk's ``{"city": "Kyiv", "projects": 3}`` as attributes; other text as it is."""
    try:
        value = json.loads(cell)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        return {column: cell.strip()}
    flat: dict[str, str] = {}
    for key, item in value.items():
        # a name fit for a CSV header (one line); a value as text, JSON unless a string
        name = " ".join(str(key).split())
        text = item if isinstance(item, str) else _to_json(item)
        if name and text.strip():
            flat[name] = text.strip()
    return flat


# --- writing ----------------------------------------------------------------------------------


class _Driver:
    """Hand-written SQL for the hot path, one statement per step and batch.

    SQLAlchemy's per-row parameter processing (datetime and JSON binds, expanding IN) cost
    more than the database itself here. SQLite takes ``executemany`` (in-process, no round
    trips); PostgreSQL takes whole columns as arrays (``unnest``, ``= ANY``) so a batch is one
    round trip per step. Only our own table names and placeholders are formatted into the
    SQL; every value is bound.
    """

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        utc = now.astimezone(UTC)
        # the text UtcDateTime stores on SQLite (UTC, no offset), so reads through Core agree
        self.now: object = (
            utc if self.pg else utc.replace(tzinfo=None).isoformat(" ", "microseconds")
        )
        if not self.pg:
            # 64 MiB of page cache for this connection: index pages of a large list stay in
            # memory instead of being re-read for every random insert (default is 2 MiB)
            conn.exec_driver_sql("PRAGMA cache_size = -65536")

    def _select(self, sql: str, column: str, values: Sequence[object], *extra: object) -> list[Any]:
        """Rows of ``sql`` (with ``{marks}`` for ``extra``) where ``column`` is in ``values``."""
        # the raw DB-API cursor: SQLAlchemy's Result builds a Row per row, which showed up
        cursor = self.conn.connection.cursor()
        try:
            if self.pg:
                query = sql.replace("{marks}", "%s") + f" AND {column} = ANY(%s)"
                cursor.execute(query, (*extra, list(values)))
                return list(cursor.fetchall())
            rows: list[Any] = []
            # old SQLite builds allow 999 parameters per statement
            for start in range(0, len(values), 900):
                chunk = values[start : start + 900]
                marks = ", ".join("?" * len(chunk))
                query = sql.replace("{marks}", "?") + f" AND {column} IN ({marks})"
                cursor.execute(query, (*extra, *chunk))
                rows.extend(cursor.fetchall())
            return rows
        finally:
            cursor.close()

    def suppressed(self, hashes: Sequence[str]) -> list[tuple[str, str]]:
        sql = f"SELECT email_hash, reason FROM {suppressions.name} WHERE 1 = 1"  # noqa: S608
        return [(str(h), str(r)) for h, r in self._select(sql, "email_hash", hashes)]

    def subscriber_ids(self, emails: Sequence[str]) -> list[tuple[int, str, str]]:
        sql = f"SELECT id, uid, email_normalized FROM {subscribers.name} WHERE 1 = 1"  # noqa: S608
        return [
            (int(i), str(u), str(e)) for i, u, e in self._select(sql, "email_normalized", emails)
        ]

    def statuses(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        sql = f"SELECT subscriber_id, status FROM {subscriptions.name} WHERE list_id = {{marks}}"  # noqa: S608
        return {int(i): str(st) for i, st in self._select(sql, "subscriber_id", ids, list_id)}

    def insert_subscribers(
        self, rows: list[tuple[str, str, str, str | None, str]], source: str
    ) -> None:
        """rows: (uid, email, email_normalized, name, attributes as JSON text)."""
        columns = "uid, email, email_normalized, name, attributes, source, created_at, confirmed_at"
        if self.pg:
            uid, email, normalized, name, attributes = (list(c) for c in zip(*rows, strict=True))
            self.conn.exec_driver_sql(
                f"INSERT INTO {subscribers.name} ({columns}) "  # noqa: S608
                "SELECT u, e, n, nm, a::json, %s, %s, %s FROM unnest("
                "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS t(u, e, n, nm, a) "
                "ON CONFLICT (email_normalized) DO NOTHING",
                (source, self.now, self.now, uid, email, normalized, name, attributes),
            )
        else:
            self.conn.exec_driver_sql(
                f"INSERT INTO {subscribers.name} ({columns}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_normalized) DO NOTHING",
                [(*row, source, self.now, self.now) for row in rows],
            )

    def insert_subscriptions(self, list_id: int, ids: Sequence[int], status: str) -> None:
        columns = "subscriber_id, list_id, status, created_at, confirmed_at"
        if self.pg:
            self.conn.exec_driver_sql(
                f"INSERT INTO {subscriptions.name} ({columns}) "  # noqa: S608
                "SELECT s, %s, %s, %s, %s FROM unnest(%s::int[]) AS t(s) "
                "ON CONFLICT (subscriber_id, list_id) DO NOTHING",
                (list_id, status, self.now, self.now, list(ids)),
            )
        else:
            self.conn.exec_driver_sql(
                f"INSERT INTO {subscriptions.name} ({columns}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (subscriber_id, list_id) DO NOTHING",
                [(sid, list_id, status, self.now, self.now) for sid in ids],
            )

    def confirm_subscriptions(self, list_id: int, ids: Sequence[int]) -> None:
        """Confirm subscriptions waiting for confirmation (the operator vouches for them)."""
        waiting, confirmed = (
            SubscriptionStatus.UNCONFIRMED.value,
            SubscriptionStatus.CONFIRMED.value,
        )
        if self.pg:
            self.conn.exec_driver_sql(
                f"UPDATE {subscriptions.name} SET status = %s, confirmed_at = %s "  # noqa: S608
                "WHERE list_id = %s AND status = %s AND subscriber_id = ANY(%s)",
                (confirmed, self.now, list_id, waiting, list(ids)),
            )
            self.conn.exec_driver_sql(
                f"UPDATE {subscribers.name} SET confirmed_at = %s "  # noqa: S608
                "WHERE confirmed_at IS NULL AND id = ANY(%s)",
                (self.now, list(ids)),
            )
        else:
            self.conn.exec_driver_sql(
                f"UPDATE {subscriptions.name} SET status = ?, confirmed_at = ? "  # noqa: S608
                "WHERE list_id = ? AND status = ? AND subscriber_id = ?",
                [(confirmed, self.now, list_id, waiting, sid) for sid in ids],
            )
            self.conn.exec_driver_sql(
                f"UPDATE {subscribers.name} SET confirmed_at = ? "  # noqa: S608
                "WHERE confirmed_at IS NULL AND id = ?",
                [(self.now, sid) for sid in ids],
            )


_STATUSES = {status.value: status for status in SubscriptionStatus}


def _write_batch(
    engine: Engine,
    batch: list[_Row],
    list_id: int,
    list_slug: str,
    source: str,
    now: datetime,
    on_reject: RejectSink,
    report: ImportReport,
) -> None:
    unique: dict[str, _Row] = {}
    for row in batch:
        if row.normalized in unique:
            report.duplicates += 1
        else:
            unique[row.normalized] = row
    with engine.begin() as conn:
        db = _Driver(conn, now)
        hashes = {email_hash(n): n for n in unique}
        # consent.decide refuses every suppressed address: the batch finds them by hash first
        for digest, reason in db.suppressed(list(hashes)):
            row = unique.pop(hashes[digest])
            report.rejected += 1
            on_reject(Reject(row.line, f"suppressed ({reason}): never re-subscribed", row.raw))
        if not unique:
            return
        # one urandom call per batch instead of one per row (same 128-bit random uids)
        pool = os.urandom(16 * len(unique)).hex()
        uids = {n: pool[32 * i : 32 * i + 32] for i, n in enumerate(unique)}
        db.insert_subscribers(
            [
                (
                    uids[n],
                    row.email,
                    n,
                    row.name,
                    _to_json(row.attributes) if row.attributes else "{}",
                )
                for n, row in unique.items()
            ],
            source,
        )
        by_id: dict[int, str] = {}
        for sid, uid, normalized in db.subscriber_ids(list(unique)):
            by_id[sid] = normalized
            if uid == uids[normalized]:
                report.added += 1
        existing = db.statuses(list_id, list(by_id))
        new_ids: list[int] = []
        confirm_ids: list[int] = []
        for sid, normalized in by_id.items():
            status = existing.get(sid)
            verdict = decide(
                authority=Authority.OPERATOR,
                current=None if status is None else _STATUSES[status],
                suppressed=False,
            )
            if verdict is Verdict.ADD:
                new_ids.append(sid)
            elif verdict is Verdict.CONFIRM:
                confirm_ids.append(sid)
            elif verdict is Verdict.LEFT:
                row = unique[normalized]
                report.rejected += 1
                reason = f"unsubscribed from {list_slug}: only they can re-join"
                on_reject(Reject(row.line, reason, row.raw))
            else:
                report.already += 1
        if new_ids:
            db.insert_subscriptions(list_id, new_ids, SubscriptionStatus.CONFIRMED.value)
        if confirm_ids:
            db.confirm_subscriptions(list_id, confirm_ids)
        report.subscribed += len(new_ids) + len(confirm_ids)


# --- rejects and export -----------------------------------------------------------------------


class RejectsWriter:
    """A CSV of rejected rows: line, reason, then the row as it was in the file.

    The file is created at the first reject, so a clean import leaves none behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: Sequence[str] = ()
        self.count = 0
        self._fh: TextIO | None = None
        self._writer: Any = None

    def set_header(self, header: Sequence[str]) -> None:
        self.header = header

    def __call__(self, reject: Reject) -> None:
        if self._writer is None:
            try:
                self._fh = self.path.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise ImportFileError(
                    f"cannot write the rejects file: {exc.strerror}", path=self.path
                ) from None
            self._writer = csv.writer(self._fh)
            self._writer.writerow(["line", "reason", *self.header])
        self._writer.writerow([reject.lines, reject.reason, *reject.row])
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def export_csv(
    conn: Connection,
    out: TextIO,
    *,
    list_id: int | None,
    status: SubscriptionStatus | None,
    excel_safe: bool = False,
) -> int:
    """Write subscribers as CSV that :func:`import_csv` reads back exactly; returns the count.

    Cells are written as they are stored, so export then import gives the same names and
    attributes. ``excel_safe`` is for files opened in a spreadsheet instead: a cell that
    starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gains a leading ``'``,
    so it is shown as text and never run as a formula (such a file is not for re-import).
    """
    keys: dict[str, None] = {}
    for sub in iter_subscribers(conn, list_id=list_id, status=status):
        keys.update(dict.fromkeys(sub.attributes))
    extra = list(keys)
    cell = _safe_cell if excel_safe else _same
    writer = csv.writer(out)
    writer.writerow(
        [
            cell(c)
            for c in (
                "email",
                "name",
                "status",
                "subscribed_at",
                "confirmed_at",
                *(_attribute_column(k) for k in extra),
            )
        ]
    )
    count = 0
    for sub in iter_subscribers(conn, list_id=list_id, status=status):
        current = sub.subscription(list_id) if list_id is not None else None
        writer.writerow(
            [
                cell(sub.email),
                cell(sub.name or ""),
                current.status.value if current else "",
                _iso(current.created_at if current else sub.created_at),
                _iso(current.confirmed_at if current else sub.confirmed_at),
                *(cell(_attribute_text(sub.attributes.get(k))) for k in extra),
            ]
        )
        count += 1
    return count


def _attribute_column(key: str) -> str:
    """The header of attribute ``key``: its name, or prefixed when import would misread it."""
    # a header is one line: a line break in a name (JSON keys can hold one) becomes a space
    key = key.replace("\r", " ").replace("\n", " ")
    if (
        not key.strip()
        or key != key.strip()
        or _key(key) in _RESERVED
        or key.lower().startswith(ATTRIBUTE_PREFIX)
    ):
        return ATTRIBUTE_PREFIX + key
    return key


def _attribute_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else _to_json(value)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _same(value: str) -> str:
    return value


def _safe_cell(value: str) -> str:
    # spreadsheet formula injection (OWASP "CSV injection"): a cell starting with one of
    # these runs as a formula in Excel, LibreOffice and Google Sheets; a leading ' makes it text
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
