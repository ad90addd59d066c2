"""CSV import and export of subscribers: streamed, batched, idempotent, nothing valid lost.

Import reads the file line by line (UTF-8 with or without BOM; a line that is not UTF-8 is read
as Windows-1252/Latin-1 and reported), finds the delimiter from the header, and writes in
batches with ``INSERT ... ON CONFLICT DO NOTHING`` and set-based subscription upserts, one
transaction per batch, so memory stays flat and an interrupted import can simply be run again.
Every row that is not imported is handed to ``on_reject`` with its line number and the reason.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TextIO

from sqlalchemy import Connection, Engine

from newsletter.addresses import clean_name, email_hash, normalize_email
from newsletter.consent import Authority, Verdict, decide
from newsletter.errors import ImportFileError, InvalidAddressError
from newsletter.states import SubscriptionStatus
from newsletter.store.schema import subscribers, subscriptions, suppressions
from newsletter.store.subscribers import iter_subscribers

EMAIL_COLUMNS = ("email", "e-mail", "email address", "email_address", "mail")
NAME_COLUMNS = ("name", "full name", "full_name")
# written by export; read back they describe state, not attributes
EXPORT_ONLY_COLUMNS = ("status", "subscribed_at", "confirmed_at", "unsubscribed_at")
DELIMITERS = (",", ";", "\t", "|")
BATCH_SIZE = 5000
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_BOM = b"\xef\xbb\xbf"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str
    row: Sequence[str]


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

    Existing subscribers keep their name and attributes; suppressed addresses and people who
    left ``list_id`` are rejected, never re-subscribed. ``progress`` gets bytes read so far.
    ``encoding`` forces one encoding for the whole file instead of UTF-8 with fallback.
    """
    now = now or datetime.now(UTC)
    source = source or f"import:{path.name}"
    report = ImportReport()
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot open: {exc.strerror}", path=path) from None
    with fh:
        _refuse_utf16(fh, path)
        lines = _Lines(fh, encoding, report, path)
        header_line, header = _read_header(lines, delimiter, path, report)
        columns = _Columns.from_header(header, path, header_line)
        if on_header:
            on_header(header)
        reader = csv.reader(lines, delimiter=report.delimiter, strict=False)
        batch: list[_Row] = []
        for cells, line, end in _rows(reader, header_line, path):
            if not "".join(cells).strip():
                report.blank += 1
                continue
            report.rows += 1
            parsed = columns.parse(cells, line, end, on_reject, report)
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
    return report


# --- reading ----------------------------------------------------------------------------------


class _Lines:
    """Decoded lines of the file, read in blocks so the per-line cost stays in C.

    A block that is valid UTF-8 is decoded at once; one that is not is decoded line by line,
    each bad line as Windows-1252 (recorded in the report). Lines split the way ``csv`` wants
    (``newline=""``). ``position`` is the bytes read, for the progress bar.
    """

    BLOCK = 1 << 20

    def __init__(
        self, fh: BinaryIO, encoding: str | None, report: ImportReport, path: Path
    ) -> None:
        self.fh = fh
        self.encoding = encoding
        self.report = report
        self.path = path
        self.position = 0
        self._line = 0  # physical lines decoded so far (for error messages)
        self._iter: Iterator[str] = itertools.chain.from_iterable(self._blocks())

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def _blocks(self) -> Iterator[io.StringIO]:
        carry = b""
        first = True
        while True:
            chunk = self.fh.read(self.BLOCK)
            data = carry + chunk
            if first:
                if data.startswith(_BOM):
                    data = data[len(_BOM) :]
                first = False
            if not data:
                return
            if chunk:
                cut = data.rfind(b"\n") + 1 or data.rfind(b"\r") + 1
                if not cut:
                    carry = data
                    continue
                block, carry = data[:cut], data[cut:]
            else:
                block, carry = data, b""
            self.position += len(block)
            text = self._decode(block)
            if "\0" in text:
                line = self._line + text[: text.index("\0")].count("\n") + 1
                raise ImportFileError(
                    "contains NUL bytes: this is not a text CSV file (a spreadsheet?)",
                    path=self.path,
                    line=line,
                )
            self._line += block.count(b"\n")
            yield io.StringIO(text, newline="")
            if not chunk:
                return

    def _decode(self, block: bytes) -> str:
        if self.encoding is not None:
            try:
                return block.decode(self.encoding)
            except UnicodeDecodeError as exc:
                line = self._line + block[: exc.start].count(b"\n") + 1
                raise ImportFileError(
                    f"not valid {self.encoding} ({exc.reason}); check --encoding",
                    path=self.path,
                    line=line,
                ) from None
            except LookupError:
                raise ImportFileError(
                    f"unknown encoding {self.encoding!r}", path=self.path
                ) from None
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            pass
        parts = []
        for number, raw in enumerate(io.BytesIO(block), start=self._line + 1):
            try:
                parts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                # Excel's "CSV" on Windows is Windows-1252; cp1252 leaves five bytes
                # undefined, which Latin-1 maps, so every line decodes and no row is lost
                self.report.fallback_count += 1
                if len(self.report.fallback_lines) < 20:
                    self.report.fallback_lines.append(number)
                try:
                    parts.append(raw.decode("cp1252"))
                except UnicodeDecodeError:
                    parts.append(raw.decode("latin-1"))
        return "".join(parts)


def _refuse_utf16(fh: BinaryIO, path: Path) -> None:
    start = fh.read(4)
    fh.seek(0)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(start) >= 2 and b"\0" in start[:2]):
        raise ImportFileError(
            "is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8' and import again",
            path=path,
            line=1,
        )


def _read_header(
    lines: _Lines, delimiter: str | None, path: Path, report: ImportReport
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
        cells = next(csv.reader([text], delimiter=d))
        if any(_key(c) in EMAIL_COLUMNS for c in cells):
            candidates[d] = cells
    if delimiter is not None:
        if len(delimiter) != 1:
            raise ImportFileError(f"delimiter must be one character, got {delimiter!r}", path=path)
        cells = next(csv.reader([text], delimiter=delimiter))
        if not any(_key(c) in EMAIL_COLUMNS for c in cells):
            hint = ""
            if candidates:
                other = max(candidates, key=lambda d: len(candidates[d]))
                hint = (
                    f"; the file seems to use the {_DELIMITER_NAMES[other]}: --delimiter '{other}'"
                )
            raise ImportFileError(
                f"no 'email' column with delimiter {delimiter!r} in header {text.strip()!r}{hint}",
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


def _key(column: str) -> str:
    return " ".join(column.strip().lower().split())


@dataclass(frozen=True)
class _Columns:
    email: int
    name: int | None
    extra: tuple[tuple[int, str], ...]
    width: int

    @classmethod
    def from_header(cls, header: list[str], path: Path, line: int) -> _Columns:
        keys = [_key(c) for c in header]
        seen: set[str] = set()
        for key in keys:
            if key and key in seen:
                raise ImportFileError(
                    f"column {key!r} appears twice in the header", path=path, line=line
                )
            seen.add(key)
        email = next(i for i, k in enumerate(keys) if k in EMAIL_COLUMNS)
        name = next((i for i, k in enumerate(keys) if k in NAME_COLUMNS), None)
        extra = tuple(
            (i, header[i].strip())
            for i, k in enumerate(keys)
            if i not in (email, name) and k and k not in EXPORT_ONLY_COLUMNS
        )
        return cls(email, name, extra, len(header))

    def parse(
        self, cells: list[str], line: int, end: int, on_reject: RejectSink, report: ImportReport
    ) -> _Row | None:
        def reject(reason: str) -> None:
            if end > line:
                reason += f" (this record spans lines {line}-{end}: an unbalanced quote?)"
            report.rejected += 1
            on_reject(Reject(line, reason, cells))

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
        try:
            normalized = normalize_email(email)
        except InvalidAddressError as exc:
            reject(f"invalid address: {exc.reason}")
            return None
        name = (
            clean_name(cells[self.name])
            if self.name is not None and self.name < len(cells)
            else None
        )
        attributes = {
            column: cells[i].strip()
            for i, column in self.extra
            if i < len(cells) and cells[i].strip()
        }
        return _Row(line, email, normalized, name, attributes, cells)


def _rows(reader: Any, offset: int, path: Path) -> Iterator[tuple[list[str], int, int]]:
    """Each record with the lines it starts and ends on (a quoted value may span lines).

    ``offset`` is the header's line: the reader starts counting after it.
    """
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                f'{exc}: probably an unbalanced quote (") starting here swallowed the rest of '
                "the file; fix it and import again (rows above were imported)",
                path=path,
                line=offset + last + 1,
            ) from None
        yield cells, offset + last + 1, offset + reader.line_num
        last = reader.line_num


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
        self._writer.writerow([reject.line, reject.reason, *reject.row])
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
) -> int:
    """Write subscribers as CSV that :func:`import_csv` reads back; returns the row count."""
    keys: dict[str, None] = {}
    for sub in iter_subscribers(conn, list_id=list_id, status=status):
        keys.update(dict.fromkeys(sub.attributes))
    extra = [
        k for k in keys if _key(k) not in (*EMAIL_COLUMNS, *NAME_COLUMNS, *EXPORT_ONLY_COLUMNS)
    ]
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status", "subscribed_at", "confirmed_at", *extra])
    count = 0
    for sub in iter_subscribers(conn, list_id=list_id, status=status):
        current = sub.subscription(list_id) if list_id is not None else None
        writer.writerow(
            [
                sub.email,
                _safe_cell(sub.name or ""),
                current.status.value if current else "",
                _iso(current.created_at if current else sub.created_at),
                _iso(current.confirmed_at if current else sub.confirmed_at),
                *(_safe_cell(str(sub.attributes.get(k, ""))) for k in extra),
            ]
        )
        count += 1
    return count


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _safe_cell(value: str) -> str:
    # spreadsheet formula injection: a cell starting with = + - @ runs as a formula in Excel
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
