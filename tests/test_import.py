"""CSV import and export against real SQLite and PostgreSQL: malformed files lose nothing valid."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from newsletter.addresses import normalize_email
from newsletter.config import Settings
from newsletter.errors import ImportFileError, InvalidAddressError
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.database import make_engine, migrate
from newsletter.store.importing import ImportReport, Reject, RejectsWriter, export_csv, import_csv
from newsletter.store.subscribers import (
    add_subscriber,
    ensure_lists,
    find_by_email,
    iter_subscribers,
    suppress,
    unsubscribe,
)


def run(
    engine: Engine, path: Path, list_id: int, **kwargs: object
) -> tuple[ImportReport, list[Reject]]:
    rejects: list[Reject] = []
    report = import_csv(
        engine,
        path,
        list_id=list_id,
        list_slug="weekly",
        on_reject=rejects.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return report, rejects


def on_list(engine: Engine, list_id: int) -> dict[str, str | None]:
    with engine.begin() as conn:
        return {
            s.email_normalized: s.name
            for s in iter_subscribers(conn, list_id=list_id, status=SubscriptionStatus.CONFIRMED)
        }


MESSY = (
    "\ufeffEmail,Name,City\r\n"
    "alice@example.org,Alice,Kyiv\r\n"
    "not-an-address,Bob,Lviv\r\n"
    "\r\n"
    "ALICE@Example.ORG,Alice again,Odesa\r\n"
    "carol@bücher.de,Carol,Berlin\r\n"
    "carol@xn--bcher-kva.de,Carol punycode,Berlin\r\n"
    ",No Address,Nowhere\r\n"
    "dave@example.org,Dave,Paris,extra,fields\r\n"
    '   erin@example.org   ,"Erin, the Great","Rome"\r\n'
    ",,\r\n"
    "frank@example.org\r\n"
    'gina@example.org,"Gina\r\nBcc: x@y.z",Oslo\r\n'
    "x@y\r\n"
)


def test_messy_file_keeps_every_valid_row(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(MESSY.encode("utf-8"))
    report, rejects = run(engine, path, lists["weekly"], batch_size=3)
    imported = on_list(engine, lists["weekly"])
    assert set(imported) == {
        "alice@example.org",
        "carol@bücher.de",
        "erin@example.org",
        "frank@example.org",
        "gina@example.org",
    }
    assert imported["alice@example.org"] == "Alice"  # first occurrence wins
    assert imported["erin@example.org"] == "Erin, the Great"
    assert imported["gina@example.org"] == "Gina Bcc: x@y.z"  # line break folded away
    assert {(r.line, r.reason.split(":")[0]) for r in rejects} == {
        (3, "invalid address"),
        (8, "no email address"),
        (9, "5 fields but the header has 3 (a comma in an unquoted value?)"),
        (15, "invalid address"),
    }
    assert report.rows == 11
    assert report.added == 5
    # repeats inside a batch count as repeats, across batches as already on the list
    assert report.duplicates + report.already == 2
    assert report.blank == 2
    assert report.rejected == 4
    with engine.begin() as conn:
        alice = find_by_email(conn, "alice@example.org")
    assert alice is not None
    assert alice.attributes == {"City": "Kyiv"}
    assert alice.source == "import:messy.csv"
    assert re.fullmatch("[0-9a-f]{32}", alice.uid)  # what unsubscribe tokens carry

    # running it again changes nothing and reports the same rejects
    again, rejects_again = run(engine, path, lists["weekly"])
    assert again.added == 0
    assert again.subscribed == 0
    assert again.already == 5
    assert [r.line for r in rejects_again] == [r.line for r in rejects]
    assert on_list(engine, lists["weekly"]) == imported


def test_semicolons_are_detected(engine: Engine, lists: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("name;email\nA, B;a@example.org\nC;c@example.org\n", encoding="utf-8")
    report, rejects = run(engine, path, lists["weekly"])
    assert report.delimiter == ";"
    assert rejects == []
    assert on_list(engine, lists["weekly"]) == {"a@example.org": "A, B", "c@example.org": "C"}


def test_excel_sep_line_names_the_delimiter(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("sep=|\r\nemail|name\r\nd@example.org|D, E\r\n", encoding="utf-8")
    report, rejects = run(engine, path, lists["weekly"])
    assert report.delimiter == "|"
    assert rejects == []
    assert on_list(engine, lists["weekly"]) == {"d@example.org": "D, E"}


def test_wrong_explicit_delimiter_is_a_clear_error(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "tabs.csv"
    path.write_text("\n\nemail\tname\na@example.org\tA\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as info:
        run(engine, path, lists["weekly"], delimiter=",")
    assert info.value.line == 3
    assert "--delimiter '\t'" in str(info.value)
    report, _ = run(engine, path, lists["weekly"])
    assert report.delimiter == "\t"
    assert report.added == 1


def test_latin1_file_falls_back_per_line_and_says_so(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "email,name\nrene@example.org,René Lévêque\nzoe@example.org,Zoë\n".encode("latin-1")
        + "utf@example.org,Łukasz\n".encode()
    )
    report, rejects = run(engine, path, lists["weekly"])
    assert rejects == []
    assert report.fallback_lines == [2, 3]
    assert on_list(engine, lists["weekly"]) == {
        "rene@example.org": "René Lévêque",
        "zoe@example.org": "Zoë",
        "utf@example.org": "Łukasz",
    }
    with pytest.raises(ImportFileError) as info:
        run(engine, path, lists["weekly"], encoding="utf-8")
    assert info.value.line == 2
    report, _ = run(engine, path, lists["weekly"], encoding="latin-1")
    assert report.fallback_count == 0


def test_files_that_are_not_csv(engine: Engine, lists: dict[str, int], tmp_path: Path) -> None:
    cases = {
        "utf16.csv": "email\na@example.org\n".encode("utf-16"),
        "empty.csv": b"\n\n",
        "noemail.csv": b"name,city\nA,B\n",
        "binary.csv": b"email\nok@example.org\n\x00\x01\x02",
        "twice.csv": b"email,Email\na@example.org,b@example.org\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImportFileError) as info:
            run(engine, path, lists["weekly"])
        assert name in str(info.value)
    with pytest.raises(ImportFileError, match="cannot open"):
        run(engine, tmp_path / "missing.csv", lists["weekly"])


def test_unbalanced_quote_is_reported_with_the_lines_it_swallowed(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        'email,name\na@example.org,A\n"b@example.org,B\nc@example.org,C\n', encoding="utf-8"
    )
    report, rejects = run(engine, path, lists["weekly"])
    (reject,) = rejects
    assert (reject.line, reject.end, reject.lines) == (3, 4, "3-4")
    assert reject.reason.startswith('unbalanced quote ("): the value opened on line 3')
    assert reject.row == ["b@example.org,B"]
    assert report.problems == [reject]
    # the line it swallowed is read again as the row it is
    assert set(on_list(engine, lists["weekly"])) == {"a@example.org", "c@example.org"}


def test_suppressed_and_departed_are_rejected_not_resubscribed(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    with engine.begin() as conn:
        suppress(conn, "bounced@example.org", SuppressionReason.BOUNCED)
        # still on business: leaving the last list would be leaving everything (suppressed)
        left = add_subscriber(
            conn, "left@example.org", list_ids=[lists["weekly"], lists["business"]]
        )
        unsubscribe(conn, left.id, lists["weekly"])
        add_subscriber(conn, "other@example.org", list_ids=[lists["business"]])
    path = tmp_path / "back.csv"
    path.write_text(
        "email\nBounced@example.org\nleft@example.org\nother@example.org\n", encoding="utf-8"
    )
    report, rejects = run(engine, path, lists["weekly"])
    assert [(r.line, r.reason.split(" ")[0]) for r in rejects] == [
        (2, "suppressed"),
        (3, "unsubscribed"),
    ]
    assert report.subscribed == 1
    assert set(on_list(engine, lists["weekly"])) == {"other@example.org"}
    with engine.begin() as conn:
        assert find_by_email(conn, "bounced@example.org") is None


def test_rejects_writer_and_export_round_trip(
    engine: Engine, lists: dict[str, int], tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "email,name,plan,formula\na@example.org,Ann,gold,=1+1\nbad,X,Y,Z\nb@example.org,,,\n",
        encoding="utf-8",
    )
    writer = RejectsWriter(tmp_path / "rejects.csv")
    import_csv(
        engine,
        path,
        list_id=lists["weekly"],
        list_slug="weekly",
        on_reject=writer,
        on_header=writer.set_header,
    )
    writer.close()
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line", "reason", "email", "name", "plan", "formula"]
    assert rows[1][0] == "3"
    assert rows[1][2:] == ["bad", "X", "Y", "Z"]

    out = io.StringIO()
    with engine.begin() as conn:
        count = export_csv(conn, out, list_id=lists["weekly"], status=SubscriptionStatus.CONFIRMED)
    assert count == 2
    exported = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert exported[0]["email"] == "a@example.org"
    assert exported[0]["plan"] == "gold"
    assert exported[0]["formula"] == "=1+1"  # as stored: the round trip is exact
    assert exported[0]["status"] == "confirmed"

    # and it imports back into a fresh store as the same subscribers
    again = tmp_path / "export.csv"
    again.write_text(out.getvalue(), encoding="utf-8")
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(fresh)
    with fresh.begin() as conn:
        weekly = ensure_lists(conn, settings)["weekly"]
    _report, rejects = run(fresh, again, weekly)
    assert rejects == []
    assert on_list(fresh, weekly) == {"a@example.org": "Ann", "b@example.org": None}
    with fresh.begin() as conn:
        ann = find_by_email(conn, "a@example.org")
    assert ann is not None
    assert ann.attributes["plan"] == "gold"
    assert ann.attributes["formula"] == "=1+1"
    assert "status" not in ann.attributes
    fresh.dispose()


# --- property: whatever the mix of rows, every valid address arrives exactly once ------------

LOCAL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,15}", fullmatch=True)
DOMAIN = st.sampled_from(["example.org", "Example.COM", "bücher.de", "mail.example.net"])
VALID = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
# NUL is refused for the whole file by design (not a text CSV), so it is not in the mix
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
JUNK = st.text(alphabet=TEXT, max_size=20)
CELL = st.text(alphabet=TEXT, max_size=12)


@hyp_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.tuples(st.one_of(VALID, JUNK), CELL), max_size=30),
    delimiter=st.sampled_from([",", ";", "\t"]),
    crlf=st.booleans(),
)
@pytest.mark.slow
def test_property_nothing_valid_is_lost(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    rows: list[tuple[str, str]],
    delimiter: str,
    crlf: bool,
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    path = tmp / "p.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    expected = set()
    for email, _ in rows:
        with contextlib.suppress(InvalidAddressError):
            expected.add(normalize_email(email.strip()))
    engine = make_engine(f"sqlite:///{tmp / 'p.db'}")
    migrate(engine)
    with engine.begin() as conn:
        weekly = ensure_lists(conn, settings)["weekly"]
    report, rejects = run(engine, path, weekly, batch_size=7)
    engine.dispose()
    assert set(on_list_engine_free(tmp / "p.db", weekly)) == expected
    assert report.rows == report.added + report.duplicates + report.already + len(rejects)


def on_list_engine_free(db: Path, list_id: int) -> set[str]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        return set(on_list(engine, list_id))
    finally:
        engine.dispose()


# --- the common exports, as their services write them (tests/data/exports) -------------------

EXPORTS = Path(__file__).parent / "data" / "exports"


def subscribers_of(engine: Engine, list_id: int) -> dict[str, tuple[str | None, dict[str, str]]]:
    with engine.begin() as conn:
        return {
            s.email_normalized: (s.name, dict(s.attributes))
            for s in iter_subscribers(conn, list_id=list_id, status=SubscriptionStatus.CONFIRMED)
        }


def test_mailchimp_export(engine: Engine, lists: dict[str, int]) -> None:
    report, rejects = run(engine, EXPORTS / "mailchimp_subscribed.csv", lists["weekly"])
    assert rejects == []
    got = subscribers_of(engine, lists["weekly"])
    assert set(got) == {"ann.lee@example.com", "bob@example.net", "chloé@bücher.de"}
    # "First Name" and "Last Name" make the name; the other columns are attributes
    name, attributes = got["ann.lee@example.com"]
    assert name == "Ann Lee"
    assert attributes["Phone Number"] == "+353 21 555 0101"
    assert attributes["TAGS"] == '"vip","early"'
    assert "First Name" not in attributes
    assert got["bob@example.net"][0] == "Bob"
    assert got["chloé@bücher.de"] == (
        "Chloé Dubois-Martin",
        {
            "MEMBER_RATING": "3",
            "OPTIN_TIME": "2023-05-11 09:00:00",
            "CONFIRM_TIME": "2023-05-11 09:05:00",
            "CONFIRM_IP": "192.0.2.44",
            "CC": "FR",
            "LAST_CHANGED": "2023-05-11 09:05:00",
            "LEID": "112235",
            "EUID": "0e1f2a3b4c",
            "NOTES": "met at the fair",
        },
    )
    assert report.header[0] == "Email Address"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("mailchimp_unsubscribed.csv", "UNSUB_TIME: 2024-01-15 07:45:12"),
        ("mailchimp_cleaned.csv", "CLEAN_TIME: 2023-07-02 11:12:13"),
    ],
)
def test_mailchimp_unsubscribed_and_cleaned_exports_subscribe_nobody(
    engine: Engine, lists: dict[str, int], name: str, reason: str
) -> None:
    report, rejects = run(engine, EXPORTS / name, lists["weekly"])
    assert [(r.line, r.reason) for r in rejects] == [
        (2, f"the file marks them as not subscribed ({reason})")
    ]
    assert report.added == 0
    assert subscribers_of(engine, lists["weekly"]) == {}


def test_substack_export(engine: Engine, lists: dict[str, int]) -> None:
    _, rejects = run(engine, EXPORTS / "substack.csv", lists["weekly"])
    # email_disabled: they turned the emails off
    assert [(r.line, r.reason) for r in rejects] == [
        (4, "the file marks them as not subscribed (email_disabled: true)")
    ]
    got = subscribers_of(engine, lists["weekly"])
    assert set(got) == {"reader.one@example.com", "paying.reader@example.org"}
    assert got["paying.reader@example.org"][1]["plan"] == "yearly"
    assert got["reader.one@example.com"][0] is None


def test_buttondown_export(engine: Engine, lists: dict[str, int]) -> None:
    _, rejects = run(engine, EXPORTS / "buttondown.csv", lists["weekly"])
    assert [(r.line, r.reason.split("(")[1]) for r in rejects] == [
        (4, "subscriber_type: unsubscribed)"),
        (5, "subscriber_type: unactivated)"),
    ]
    got = subscribers_of(engine, lists["weekly"])
    assert set(got) == {"eve@example.com", "frank@example.com"}
    _, attributes = got["eve@example.com"]
    # the metadata JSON object becomes attributes (values as text)
    assert attributes["first_name"] == "Eve"
    assert attributes["company"] == "Acme"
    assert attributes["seats"] == "3"
    assert attributes["notes"] == "Asked about the archive"
    assert "metadata" not in attributes
    assert "subscriber_type" not in attributes


def test_ghost_export(engine: Engine, lists: dict[str, int]) -> None:
    _, rejects = run(engine, EXPORTS / "ghost.csv", lists["weekly"])
    assert [(r.line, r.reason) for r in rejects] == [
        (5, "the file marks them as not subscribed (subscribed_to_emails: false)")
    ]
    got = subscribers_of(engine, lists["weekly"])
    assert got["ivan@example.com"][0] == "Ivan Petrenko"
    assert got["ivan@example.com"][1]["labels"] == "Early readers, Kyiv"
    # a quoted note over two lines is a value, not a broken row
    assert got["jo@example.com"] == (
        'Jo "JJ" Jones',
        {
            "id": "64a1b2c3d4e5f6a7b8c9d0e2",
            "note": "Writes in often\nabout typos",
            "complimentary_plan": "false",
            "stripe_customer_id": "cus_Nx1Y2Z3",
            "created_at": "2023-09-02T12:00:00.000Z",
            "tiers": "Supporter",
        },
    )
    assert "kim@example.com" not in got


def test_listmonk_export(engine: Engine, lists: dict[str, int]) -> None:
    _, rejects = run(engine, EXPORTS / "listmonk.csv", lists["weekly"])
    assert [(r.line, r.reason) for r in rejects] == [
        (4, "the file marks them as not subscribed (status: blocklisted)")
    ]
    got = subscribers_of(engine, lists["weekly"])
    assert set(got) == {"lena@example.com", "mo@example.com"}
    name, attributes = got["lena@example.com"]
    assert name == "Lena Koval"
    assert attributes["city"] == "Bengaluru"
    assert attributes["projects"] == "3"
    assert attributes["stack"] == '{"languages":["go","python"]}'
    assert attributes["uuid"] == "5e5c2f4a-1d2b-4c3e-9f8a-7b6c5d4e3f2a"
    assert "attributes" not in attributes
    assert got["mo@example.com"][1] == {
        "uuid": "6f6d3a5b-2e3c-4d4f-8a9b-8c7d6e5f4a3b",
        "created_at": "2023-10-03 10:00:00.000000+00",
        "updated_at": "2023-10-03 10:00:00.000000+00",
    }


def test_spreadsheet_headers(engine: Engine, lists: dict[str, int]) -> None:
    report, rejects = run(engine, EXPORTS / "spreadsheet.csv", lists["weekly"])
    assert (report.delimiter, rejects) == (";", [])
    assert subscribers_of(engine, lists["weekly"]) == {
        "olga@example.com": ("Olga Nowak", {"Town": "Kraków"}),
        "pat@example.com": ("Pat O'Neil", {"Town": "Galway"}),
    }
    _, rejects = run(engine, EXPORTS / "contacts.csv", lists["business"])
    assert rejects == []
    assert subscribers_of(engine, lists["business"]) == {
        "quinn@example.com": ("Quinn", {"Company": "Initech"}),
        "ray@example.com": ("Ray", {}),
    }


@pytest.mark.parametrize(
    ("header", "email", "name"),
    [
        ("Email Address,Full Name", 0, 1),
        ("E-mail,Name", 0, 1),
        ("name,e-mail address", 1, 0),
        ("EMAIL_ADDRESS,Display Name", 0, 1),
    ],
)
def test_header_names(
    engine: Engine, lists: dict[str, int], tmp_path: Path, header: str, email: int, name: int
) -> None:
    cells = ["", ""]
    cells[email], cells[name] = "sam@example.org", "Sam Doe"
    path = tmp_path / "h.csv"
    path.write_text(f"{header}\n{','.join(cells)}\n", encoding="utf-8")
    _, rejects = run(engine, path, lists["weekly"])
    assert rejects == []
    assert subscribers_of(engine, lists["weekly"]) == {"sam@example.org": ("Sam Doe", {})}


def test_two_email_columns_are_refused(
    engine: Engine, lists: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "two.csv"
    path.write_text("Email Address,E-mail\na@example.org,b@example.org\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="two email columns"):
        run(engine, path, lists["weekly"])
