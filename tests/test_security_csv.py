"""Hostile and broken CSVs from the outside run (issue 15): no valid row lost without a word.

Each case goes through ``newsletter subscribers import`` as a person runs it (no traceback,
the summary and the rejects file name the lines) against real SQLite and PostgreSQL, and the
database is checked for what the summary says was imported.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from newsletter.addresses import MAX_NAME_LENGTH, clean_name
from newsletter.config import Settings
from newsletter.errors import ImportFileError
from newsletter.states import SubscriptionStatus
from newsletter.store.database import make_engine, migrate
from newsletter.store.importing import Reject, export_csv, import_csv
from newsletter.store.subscribers import add_subscriber, ensure_lists, iter_subscribers
from tests.conftest import run_cli, write_config


@pytest.fixture
def config(project: Path, database_url: str) -> Path:
    path = write_config(project, database_url=database_url)
    result = run_cli(path, "init")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def store(database_url: str) -> Engine:
    return make_engine(database_url)


def confirmed(engine: Engine) -> dict[str, str | None]:
    with engine.begin() as conn:
        return {
            s.email_normalized: s.name
            for s in iter_subscribers(conn, list_id=None, status=SubscriptionStatus.CONFIRMED)
        }


def rejects_of(path: Path) -> list[list[str]]:
    rejects = path.with_name(path.stem + ".rejects.csv")
    with rejects.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:]


# --- a quote left open ------------------------------------------------------------------------


def test_unbalanced_quote_rejects_its_row_and_keeps_the_rows_after_it(
    config: Path, store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "oops.csv"
    path.write_text(
        'email,name\na@example.org,"Oops\nb@example.org,B\nc@example.org,C\n', encoding="utf-8"
    )
    result = run_cli(config, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    # before: "1 rows: 1 new subscribers ... 0 rejected", b and c inside a's name
    assert "3 rows: 2 new subscribers, 2 joined weekly" in result.output
    assert "1 rejected" in result.output
    assert "warning: line 2-4: unbalanced quote" in result.output
    assert confirmed(store) == {"b@example.org": "B", "c@example.org": "C"}
    ((lines, reason, *row),) = rejects_of(path)
    assert lines == "2-4"
    assert reason.startswith('unbalanced quote ("): the value opened on line 2')
    assert row == ["a@example.org", "Oops"]
    store.dispose()


@pytest.mark.parametrize(
    ("text", "imported", "rejected"),
    [
        # closed by a later stray quote
        (
            'email,name\na@example.org,"Oops\nb@example.org,B\nc@example.org,"C"\n',
            {"b@example.org": "B", "c@example.org": "C"},
            ["2-4"],
        ),
        # the quote opens the address itself, the swallowed row has fewer columns
        (
            'email,name,city\n"a@example.org,A,X\nb@example.org\n',
            {"b@example.org": None},
            ["2-3"],
        ),
        # no address follows, but the quote never closes: the lines are read on their own
        (
            'email,name\na@example.org,"Oops\nnot a row\n',
            {},
            ["2-3", "3"],
        ),
        # the swallowed line has a quote of its own: read again alone, it reaches no further
        (
            'email,name\na@example.org,"A\nb@example.org,"B\nc@example.org,C\n',
            {"b@example.org": "B", "c@example.org": "C"},
            ["2-3"],
        ),
        # a value over the field limit that swallowed rows: they are read again
        (
            'email,name\na@example.org,"' + "x" * 140_000 + "\nb@example.org,B\nc@example.org,C\n",
            {"b@example.org": "B", "c@example.org": "C"},
            ["2-4"],
        ),
    ],
)
def test_unbalanced_quote_shapes(
    store: Engine,
    settings: Settings,
    tmp_path: Path,
    text: str,
    imported: dict[str, str | None],
    rejected: list[str],
) -> None:
    migrate(store)
    with store.begin() as conn:
        weekly = ensure_lists(conn, settings)["weekly"]
    path = tmp_path / "shape.csv"
    path.write_text(text, encoding="utf-8")
    rejects: list[Reject] = []
    import_csv(store, path, list_id=weekly, list_slug="weekly", on_reject=rejects.append)
    assert confirmed(store) == imported
    assert [r.lines for r in rejects] == rejected
    store.dispose()


def test_a_quoted_value_over_lines_is_still_a_value(
    store: Engine, settings: Settings, tmp_path: Path
) -> None:
    migrate(store)
    with store.begin() as conn:
        weekly = ensure_lists(conn, settings)["weekly"]
    path = tmp_path / "notes.csv"
    path.write_text(
        'email,name,note\na@example.org,A,"Call back\nafter 5, ""urgent"""\nb@example.org,B,\n',
        encoding="utf-8",
    )
    rejects: list[Reject] = []
    report = import_csv(store, path, list_id=weekly, list_slug="weekly", on_reject=rejects.append)
    assert rejects == []
    assert report.added == 2
    with store.begin() as conn:
        (a, _) = iter_subscribers(conn, list_id=weekly)
    assert a.attributes == {"note": 'Call back\nafter 5, "urgent"'}
    store.dispose()


# --- a value over csv's field limit -------------------------------------------------------------


def big_file(path: Path, rows: int, big: dict[int, str]) -> None:
    """``rows`` rows (line n+2 is row n); the rows in ``big`` carry that text as their name."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["email", "name"])
        for n in range(rows):
            writer.writerow([f"user{n}@example.org", big.get(n, f"User {n}")])


def test_a_cell_over_128_kib_rejects_its_row_and_the_import_goes_on(
    config: Path, store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    # two batches of 5,000; the huge cells in the second, the last batch (which was lost)
    big_file(path, 6000, {5500: "x" * 140_000, 5800: "multi\nline\n" + "y" * 140_000})
    result = run_cli(config, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "6000 rows: 5998 new subscribers, 5998 joined weekly" in result.output
    assert "2 rejected" in result.output
    assert "warning: line 5502: a value longer than 131,072 characters" in result.output
    assert "warning: line 5802-5804: a value longer than 131,072 characters" in result.output
    # what the summary says was imported is in the database
    got = confirmed(store)
    assert len(got) == 5998
    assert "user5999@example.org" in got
    assert "user5500@example.org" not in got
    assert "user5800@example.org" not in got
    assert got["user5801@example.org"] == "User 5801"
    rows = rejects_of(path)
    assert [(r[0], r[2]) for r in rows] == [
        ("5502", "user5500@example.org"),
        ("5802-5804", "user5800@example.org"),
    ]
    # the rejects file shows the start of the cell, not all of it
    assert len(rows[0][3]) < 1100
    store.dispose()


# --- encodings ---------------------------------------------------------------------------------

JAPANESE = "email,name\nyamada@example.jp,山田太郎\nsato@example.jp,佐藤花子\nito@example.jp,伊藤\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (JAPANESE, "shift_jis"),
        (JAPANESE, "euc_jp"),
        ("email,name\nwang@example.cn,王伟\nli@example.cn,李娜\n", "gb18030"),
        ("email,name\nivan@example.ru,Иван Петров\nmaria@example.ru,Мария\n", "cp1251"),
    ],
)
def test_a_file_in_another_encoding_is_refused_not_garbled(
    config: Path, store: Engine, tmp_path: Path, text: str, encoding: str
) -> None:
    path = tmp_path / "other.csv"
    path.write_bytes(text.encode(encoding))
    result = run_cli(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "other.csv:2: is neither UTF-8 nor Windows-1252" in result.output
    assert "save it as UTF-8 or pass --encoding" in result.output
    assert "Traceback" not in result.output
    # before: imported with mojibake names; now nothing is written
    assert confirmed(store) == {}

    result = run_cli(config, "subscribers", "import", str(path), "--encoding", encoding)
    assert result.exit_code == 0, result.output
    expected = {line.split(",")[0]: line.split(",")[1] for line in text.splitlines()[1:] if line}
    assert confirmed(store) == expected
    store.dispose()


def test_windows_1252_still_reads(config: Path, store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "email;name\nrene@example.org;René Lévêque\nzoe@example.org;Zoë “Z” Ærø\n".encode("cp1252")
    )
    result = run_cli(config, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "were read as Windows-1252" in result.output
    assert confirmed(store) == {
        "rene@example.org": "René Lévêque",
        "zoe@example.org": "Zoë “Z” Ærø",
    }
    store.dispose()


def test_a_bad_byte_late_in_the_file_is_refused_before_anything_is_written(
    config: Path, store: Engine, tmp_path: Path
) -> None:
    # past the first 1 MiB block and the first batch: before, the rows above were committed
    path = tmp_path / "late.csv"
    big_file(path, 50_000, {})
    with path.open("ab") as fh:
        fh.write(b"late@example.org," + "山田".encode("shift_jis") + b"\n")
        fh.write(b"nul@example.org,\x00\n")
    result = run_cli(config, "subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "late.csv:50003: contains NUL bytes" in result.output
    assert confirmed(store) == {}
    store.dispose()


def test_an_unknown_encoding_is_a_clear_error(
    store: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("email\na@example.org\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="unknown encoding 'klingon'"):
        import_csv(store, path, list_id=1, list_slug="weekly", on_reject=print, encoding="klingon")
    store.dispose()


# --- export then import -----------------------------------------------------------------------


def test_export_round_trip_is_exact_and_excel_safe_is_for_spreadsheets(
    config: Path, store: Engine, tmp_path: Path, project: Path
) -> None:
    people = {
        "f1@example.org": ('=HYPERLINK("http://x","y")', {"e-mail": "old@example.org"}),
        "f2@example.org": ("+1 Plus", {"Name": "alias", "status": "vip"}),
        "f3@example.org": ("-minus", {"score": "-3", " padded ": "v"}),
        "f4@example.org": ("@at", {"attribute:x": "y", "City": "Kyiv", "city": "kyiv"}),
    }
    with store.begin() as conn:
        weekly = ensure_lists(conn, load_lists(config))["weekly"]
        for email, (name, attributes) in people.items():
            add_subscriber(conn, email, list_ids=[weekly], name=name, attributes=attributes)
    out = tmp_path / "export.csv"
    result = run_cli(config, "subscribers", "export", "-o", str(out))
    assert result.exit_code == 0, result.output
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert "attribute:e-mail" in header
    assert "attribute:status" in header

    # into a fresh store: the same names and attributes
    other = tmp_path / "other"
    other.mkdir()
    fresh = write_config(other, database_url=f"sqlite:///{other / 'fresh.db'}")
    assert run_cli(fresh, "init").exit_code == 0
    result = run_cli(fresh, "subscribers", "import", str(out))
    assert result.exit_code == 0, result.output
    assert "4 rows: 4 new subscribers" in result.output
    engine = make_engine(f"sqlite:///{other / 'fresh.db'}")
    with engine.begin() as conn:
        back = {s.email: (s.name, dict(s.attributes)) for s in iter_subscribers(conn)}
    engine.dispose()
    assert back == people

    safe = tmp_path / "safe.csv"
    result = run_cli(config, "subscribers", "export", "--excel-safe", "-o", str(safe))
    assert result.exit_code == 0, result.output
    with safe.open(encoding="utf-8", newline="") as fh:
        rows = {row["email"]: row for row in csv.DictReader(fh)}
    assert rows["f1@example.org"]["name"] == '\'=HYPERLINK("http://x","y")'
    assert rows["f2@example.org"]["name"] == "'+1 Plus"
    assert rows["f3@example.org"]["score"] == "'-3"
    assert rows["f4@example.org"]["name"] == "'@at"
    for row in rows.values():
        assert not any(v[:1] in ("=", "+", "-", "@") for v in row.values())
    store.dispose()


def load_lists(config: Path) -> Settings:
    from newsletter.config import load_settings
    from tests.conftest import TEST_SECRET

    return load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


# names as the store keeps them (clean_name's output), starting with a formula character often
NAME = st.one_of(
    st.builds(
        lambda lead, rest: clean_name(lead + rest),
        st.sampled_from(["=", "+", "-", "@", "'", '"', " ", ""]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    ),
    st.just(None),
).map(lambda n: n[:MAX_NAME_LENGTH] if n else None)
# attribute names as a header cell gives them (one line, no NUL); values as import keeps them
KEY = st.one_of(
    st.sampled_from(
        ["e-mail", "Email", "name", "First Name", "status", "attributes", "attribute:x", " x "]
    ),
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x00"),
        min_size=1,
        max_size=12,
    ),
)
VALUE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
).map(str.strip)
ATTRIBUTES = st.dictionaries(KEY, VALUE.filter(bool), max_size=4)


@hyp_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=st.lists(st.tuples(NAME, ATTRIBUTES), min_size=1, max_size=6))
@pytest.mark.slow
def test_property_export_then_import_is_exact(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    people: list[tuple[str | None, dict[str, str]]],
) -> None:
    tmp = tmp_path_factory.mktemp("roundtrip")
    source = make_engine(f"sqlite:///{tmp / 'a.db'}")
    target = make_engine(f"sqlite:///{tmp / 'b.db'}")
    try:
        expected = {}
        for engine in (source, target):
            migrate(engine)
        with source.begin() as conn:
            weekly = ensure_lists(conn, settings)["weekly"]
            for n, (name, attributes) in enumerate(people):
                email = f"p{n}@example.org"
                add_subscriber(conn, email, list_ids=[weekly], name=name, attributes=attributes)
                expected[email] = (name, attributes)
        out = io.StringIO()
        with source.begin() as conn:
            export_csv(conn, out, list_id=weekly, status=SubscriptionStatus.CONFIRMED)
        path = tmp / "export.csv"
        path.write_text(out.getvalue(), encoding="utf-8", newline="")
        with target.begin() as conn:
            weekly = ensure_lists(conn, settings)["weekly"]
        rejects: list[Reject] = []
        import_csv(target, path, list_id=weekly, list_slug="weekly", on_reject=rejects.append)
        assert rejects == []
        with target.begin() as conn:
            back = {s.email: (s.name, dict(s.attributes)) for s in iter_subscribers(conn)}
        assert back == expected
    finally:
        source.dispose()
        target.dispose()


SIMPLE_NAME = st.text(st.sampled_from("abcdefghij ABC-é"), min_size=1, max_size=10).map(str.strip)


@hyp_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(SIMPLE_NAME, min_size=1, max_size=12),
    stray=st.data(),
    width=st.sampled_from([2, 3]),
)
@pytest.mark.slow
def test_property_a_stray_quote_loses_no_other_row(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    names: list[str],
    stray: st.DataObject,
    width: int,
) -> None:
    tmp = tmp_path_factory.mktemp("stray")
    rows = [[f"u{n}@example.org", name or "x", "city"][:width] for n, name in enumerate(names)]
    # a quote at the start of one row's second or third cell: it opens and never closes there
    victim = stray.draw(st.integers(0, len(rows) - 1))
    column = stray.draw(st.integers(1, width - 1))
    rows[victim][column] = '"' + rows[victim][column]
    header = ["email", "name", "city"][:width]
    path = tmp / "stray.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    engine = make_engine(f"sqlite:///{tmp / 's.db'}")
    try:
        migrate(engine)
        with engine.begin() as conn:
            weekly = ensure_lists(conn, settings)["weekly"]
        rejects: list[Reject] = []
        report = import_csv(
            engine, path, list_id=weekly, list_slug="weekly", on_reject=rejects.append
        )
        got = confirmed(engine)
    finally:
        engine.dispose()
    others = {f"u{n}@example.org" for n in range(len(rows)) if n != victim}
    assert others <= set(got)
    # the stray row itself is imported (its quote closed at the end of the file) or rejected
    # with its line, never silently merged into another
    assert set(got) - others <= {f"u{victim}@example.org"}
    assert [r.line for r in rejects] in ([], [victim + 2])
    assert report.rows == len(rows)
    assert report.added == len(got)


# bytes that look enough like a CSV to get past the header, with the odd shapes of the run
PIECE = st.sampled_from(
    [
        *(b",", b";", b'"', b'""', b"\n", b"\r\n", b"\r", b"a@example.org", b"b@example.org"),
        *(b"\xe9", b"\x82\xa0", b"\xff", b"\xef\xbb\xbf", b"=1+1", b" ", b"\t", b"{}", b"x" * 200),
    ]
)


@hyp_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    header=st.sampled_from([b"email,name\n", b"Email Address;First Name\r\n", b"e-mail\n"]),
    body=st.lists(PIECE, max_size=60).map(b"".join),
)
@pytest.mark.slow
def test_property_odd_bytes_never_raise_anything_but_a_file_error(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, header: bytes, body: bytes
) -> None:
    tmp = tmp_path_factory.mktemp("odd")
    path = tmp / "odd.csv"
    path.write_bytes(header + body)
    engine = make_engine(f"sqlite:///{tmp / 'o.db'}")
    try:
        migrate(engine)
        with engine.begin() as conn:
            weekly = ensure_lists(conn, settings)["weekly"]
        rejects: list[Reject] = []
        error: ImportFileError | None = None
        try:
            report = import_csv(
                engine, path, list_id=weekly, list_slug="weekly", on_reject=rejects.append
            )
        except ImportFileError as exc:
            error = exc
        got = confirmed(engine)
    finally:
        engine.dispose()
    if error is not None:
        assert str(error).startswith(f"{path}:")
        assert got == {}  # refused before anything was written
        return
    assert report.added == len(got)
    assert report.rows == report.added + report.duplicates + report.already + len(rejects)
    for reject in rejects:
        assert reject.line >= 2
        assert reject.reason
