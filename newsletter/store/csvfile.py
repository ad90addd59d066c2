"""Reading a subscriber CSV: its encoding, its header line, and its records with their lines.

Nothing here touches the database. :func:`check_encoding` reads the whole file once before
anything is imported, so a file that cannot be decoded is refused before a single batch is
written. :class:`Lines` decodes the file in blocks; :func:`records` splits the lines into
records with the lines each one spans, and takes apart the two shapes that would otherwise lose
rows without a word: a quote left open that swallows the rows after it, and a value larger than
``csv``'s field limit.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from charset_normalizer import from_bytes

from newsletter.errors import ImportFileError

BOM = b"\xef\xbb\xbf"
# csv's own limit (128 KiB): a longer value is rejected with its row, the rest goes on
FIELD_LIMIT = 131072
# bytes of non-UTF-8 lines handed to charset detection: plenty for a verdict, bounded time
_SAMPLE = 64 * 1024
# a cell shown in the rejects file is cut here (the file must stay readable next to the input)
_SHOWN_CELL = 1000
_QUOTE = '"'
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{3,}")
# what the first cell of a swallowed line looks like when it is a row of its own
ADDRESS_LIKE = re.compile(r"[^\s@\"',;<>()\[\]]+@[^\s@\"',;<>()\[\]]+\.[^\s@\"',;<>()\[\]]+")


@dataclass
class Fallback:
    """Lines that were not UTF-8 and were read as Windows-1252 (the report shows them)."""

    lines: list[int] = field(default_factory=list)
    count: int = 0


def refuse_utf16(fh: BinaryIO, path: Path) -> None:
    start = fh.read(4)
    fh.seek(0)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(start) >= 2 and b"\0" in start[:2]):
        raise ImportFileError(
            "is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8' and import again",
            path=path,
            line=1,
        )


def _blocks(fh: BinaryIO, block_size: int) -> Iterator[bytes]:
    """The file in blocks that end at a line break (the BOM dropped), each whole lines."""
    carry = b""
    first = True
    while True:
        chunk = fh.read(block_size)
        data = carry + chunk
        if first:
            if data.startswith(BOM):
                data = data[len(BOM) :]
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
        yield block
        if not chunk:
            return


def check_encoding(
    fh: BinaryIO, encoding: str | None, path: Path, *, block_size: int = 1 << 20
) -> None:
    """Refuse, before anything is imported, a file that cannot be read as it would be.

    With ``encoding`` the whole file must decode in it. Without, lines that are not UTF-8 are
    read as Windows-1252 (Excel's "CSV" on Windows), but only if that reads as text: the
    non-UTF-8 lines go to charset detection, and a file in Shift-JIS, GB18030, Windows-1251 ...
    is refused with what to do instead of imported as mojibake. NUL bytes are refused too.
    """
    if encoding is not None:
        try:
            "".encode(encoding)
        except LookupError:
            raise ImportFileError(f"unknown encoding {encoding!r}", path=path) from None
    line = 0
    first_bad = 0
    sample = bytearray()
    try:
        for block in _blocks(fh, block_size):
            nul = block.find(b"\0")
            if nul >= 0:
                raise ImportFileError(
                    "contains NUL bytes: this is not a text CSV file (a spreadsheet?)",
                    path=path,
                    line=line + block[:nul].count(b"\n") + 1,
                )
            if encoding is not None:
                try:
                    block.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ImportFileError(
                        f"not valid {encoding} ({exc.reason}); check --encoding",
                        path=path,
                        line=line + block[: exc.start].count(b"\n") + 1,
                    ) from None
            else:
                try:
                    block.decode("utf-8")
                except UnicodeDecodeError:
                    for number, raw in enumerate(io.BytesIO(block), start=line + 1):
                        if len(sample) >= _SAMPLE:
                            break
                        try:
                            raw.decode("utf-8")
                        except UnicodeDecodeError:
                            first_bad = first_bad or number
                            sample += raw
            line += block.count(b"\n")
    finally:
        fh.seek(0)
    if sample and not _reads_as_cp1252(bytes(sample)):
        guess = from_bytes(bytes(sample)).best()
        seems = f" (it looks like {guess.encoding})" if guess is not None else ""
        example = f" (e.g. --encoding {guess.encoding})" if guess is not None else ""
        raise ImportFileError(
            f"is neither UTF-8 nor Windows-1252{seems}, and reading it as either would garble "
            f"the names: save it as UTF-8 or pass --encoding{example}",
            path=path,
            line=first_bad,
        )


def _reads_as_cp1252(sample: bytes) -> bool:
    # Latin-1 for the five bytes Windows-1252 leaves undefined, as Lines reads them
    text = "".join(
        line.decode("cp1252") if _is_cp1252(line) else line.decode("latin-1")
        for line in io.BytesIO(sample)
    )
    # Western text has a letter with an accent here and there among ASCII ones; the bytes of
    # CJK, Cyrillic or Greek text read as Windows-1252 are runs of them ("ÍõÎ°", "Èâàí")
    outside = sum(1 for ch in text if ord(ch) > 127)
    in_runs = sum(len(run) for run in _NON_ASCII_RUN.findall(text))
    if in_runs >= 3 and in_runs * 2 >= outside:
        return False
    # charset-normalizer keeps a decoding only when it does not read as a mess (symbols
    # among letters, odd letter pairs)
    return any(
        len(from_bytes(sample, cp_isolation=[name], explain=False)) > 0
        for name in ("cp1252", "latin_1")
    )


def _is_cp1252(line: bytes) -> bool:
    try:
        line.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


class Lines:
    """Decoded lines of the file, read in blocks so the per-line cost stays in C.

    A block that is valid UTF-8 is decoded at once; one that is not is decoded line by line,
    each bad line as Windows-1252 (recorded in ``fallback``; :func:`check_encoding` has made
    sure that reads as text). Lines split the way ``csv`` wants (``newline=""``).
    ``position`` is the bytes read, for the progress bar.
    """

    BLOCK = 1 << 20

    def __init__(self, fh: BinaryIO, encoding: str | None, path: Path) -> None:
        self.fh = fh
        self.encoding = encoding
        self.path = path
        self.position = 0
        self.fallback = Fallback()
        self._line = 0  # physical lines decoded so far (for error messages)
        self._iter: Iterator[str] = itertools.chain.from_iterable(self._decoded())

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def _decoded(self) -> Iterator[io.StringIO]:
        for block in _blocks(self.fh, self.BLOCK):
            self.position += len(block)
            text = self._decode(block)
            self._line += block.count(b"\n")
            yield io.StringIO(text, newline="")

    def _decode(self, block: bytes) -> str:
        if self.encoding is not None:
            # check_encoding has read the whole file in it already
            return block.decode(self.encoding, errors="replace")
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            pass
        parts = []
        for number, raw in enumerate(io.BytesIO(block), start=self._line + 1):
            try:
                parts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                # cp1252 leaves five bytes undefined, which Latin-1 maps: every line decodes
                self.fallback.count += 1
                if len(self.fallback.lines) < 20:
                    self.fallback.lines.append(number)
                try:
                    parts.append(raw.decode("cp1252"))
                except UnicodeDecodeError:
                    parts.append(raw.decode("latin-1"))
        return "".join(parts)


class Record(NamedTuple):
    """One CSV record and the lines it spans; ``problem`` says why it is rejected whole.

    A tuple: there is one per row, and a frozen dataclass costs a microsecond each.
    """

    cells: list[str]
    line: int
    end: int
    problem: str | None = None


def records(
    lines: Iterable[str],
    *,
    first_line: int,
    delimiter: str,
    looks_like_row: Callable[[Sequence[str]], bool],
) -> Iterator[Record]:
    """The records of ``lines``, the first one on ``first_line``.

    A record over several lines is a quoted value with line breaks. When it is not well formed
    CSV (the quote is never closed, or closed in the middle of a value) or a line it swallowed
    is a row of its own (``looks_like_row``: an address where the email column is), the quote
    was left open by mistake: its first line is rejected with the lines the quote ran over,
    and each of those lines is read again as a row on its own (so a quote in one of them
    reaches no further than its line, and no line is read more than twice), so nothing valid
    disappears into a name. A value over :data:`FIELD_LIMIT` rejects its record with its
    lines; reading goes on.
    """
    pending: deque[str] = deque()  # swallowed lines, to be read again one by one
    taken: list[str] = []  # the lines of the record being read
    source = iter(lines)

    def feed() -> Iterator[str]:
        for text in source:
            taken.append(text)
            yield text

    feeder = feed()
    reader = csv.reader(feeder, delimiter=delimiter, strict=False)
    line = first_line
    while True:
        if pending:
            text = pending.popleft()
            alone = _parse_alone(text, delimiter)
            if alone is None:
                yield Record(_shown(text, delimiter), line, line, _TOO_LARGE)
            else:
                yield Record(alone, line, line)
            line += 1
            continue
        taken.clear()
        error: str | None = None
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # in non-strict mode, in practice the field limit; csv drops the rest of the line
            error = str(exc)
            cells = []
        if error is not None and "".join(taken).count(_QUOTE) % 2:
            # the quoted value that overflowed is still open: it ends at its closing quote,
            # or (no closing quote in sight) the quote was left open and swallowed what follows
            size = 0
            for text in feeder:
                size += len(text)
                if text.count(_QUOTE) % 2 or size > FIELD_LIMIT:
                    break
        end = line + len(taken) - 1
        if len(taken) > 1 and (
            any(looks_like_row(_parse_alone(text, delimiter) or ()) for text in taken[1:])
            or (error is None and not _well_formed(taken, delimiter))
        ):
            pending.extend(taken[1:])
            yield Record(
                _shown(taken[0], delimiter),
                line,
                end,
                f'unbalanced quote ("): the value opened on line {line} runs over lines '
                f"{line}-{end}; this row is rejected and "
                + (f"line {end} is" if end == line + 1 else f"lines {line + 1}-{end} are")
                + " read as rows of their own",
            )
            line += 1
            continue
        if error is not None:
            yield Record(
                _shown(taken[0], delimiter),
                line,
                end,
                _TOO_LARGE if "field larger" in error else f"cannot be read as CSV: {error}",
            )
        else:
            yield Record(cells, line, end)
        line = end + 1


_TOO_LARGE = f"a value longer than {FIELD_LIMIT:,} characters (128 KiB)"


def _well_formed(taken: list[str], delimiter: str) -> bool:
    """Whether the lines are exactly one record of strict CSV (every quote closed properly)."""
    try:
        rows = list(csv.reader(taken, delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1


def _parse_alone(text: str, delimiter: str) -> list[str] | None:
    """The cells of one physical line read on its own; None when a value is too large."""
    try:
        return next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter, strict=False), [])
    except csv.Error:
        return None


def _shown(text: str, delimiter: str) -> list[str]:
    """The cells of one line for the rejects file, a long value cut."""
    cells = _parse_alone(text, delimiter)
    if cells is None:
        cells = text.rstrip("\r\n").split(delimiter)
    return [
        c if len(c) <= _SHOWN_CELL else f"{c[:_SHOWN_CELL]}... ({len(c):,} characters)"
        for c in cells
    ]
