"""Benchmark: import generated subscriber CSVs into SQLite (and PostgreSQL), rows/s and memory.

    /work/venv/bin/python benchmarks/import.py [--rows 100000] [--postgres-url URL]

References measured in the same run: parsing the file with ``csv`` alone, and a bare
``executemany`` of the same rows into a one-table SQLite database (no validation, no
subscriptions, no ORM layer). Peak memory is measured with tracemalloc in separate runs at
1/4 and the full size, to show it stays flat as the file grows.
"""

from __future__ import annotations

import argparse
import csv
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.store.database import make_engine, migrate  # noqa: E402
from newsletter.store.importing import Reject, import_csv  # noqa: E402
from newsletter.store.subscribers import ensure_lists  # noqa: E402

CITIES = ["Kyiv", "Lviv", "Millbrook", "Zürich", "São Paulo", "Ōsaka"]
FIRST = ["Ann", "Bob", "Chloé", "Dmytro", "Eve", "François", "Gül", "Hiro"]
ASCII = {n: n.lower().replace("é", "e").replace("ç", "c").replace("ü", "u") for n in FIRST}


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "city", "plan"])
        for i in range(rows):
            first = rnd.choice(FIRST)
            # local parts are ASCII in practice; 1 in 100 is internationalised (the slow,
            # complete validation path), 1 in 7 mixed case as people type them
            local = f"{first.lower()}.{i}" if i % 100 == 0 else f"{ASCII[first]}.{i}"
            if i % 7 == 0:
                local = local.title()
            domain = f"mail{i % 97}.example.com" if i % 100 != 50 else f"post{i % 13}.bücher.de"
            writer.writerow(
                [f"{local}@{domain}", rnd.choice(FIRST), rnd.choice(CITIES), rnd.choice("ABC")]
            )


def run_import(url: str, path: Path) -> tuple[float, int]:
    from newsletter.config import MailingList, Publication, Settings

    settings = Settings(
        publication=Publication(
            name="Bench",
            sender="b@example.com",
            postal_address="x",
            base_url="http://localhost",
            default_list="weekly",
        ),
        lists={"weekly": MailingList(slug="weekly", name="Weekly")},
    )
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)["weekly"]
    rejects: list[Reject] = []
    start = time.perf_counter()
    report = import_csv(engine, path, list_id=list_id, list_slug="weekly", on_reject=rejects.append)
    elapsed = time.perf_counter() - start
    engine.dispose()
    assert report.added == report.rows, report
    assert not rejects, rejects[:3]
    return elapsed, report.rows


def reference_csv(path: Path) -> float:
    start = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as fh:
        for _ in csv.reader(fh):
            pass
    return time.perf_counter() - start


def reference_executemany(path: Path, db: Path) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE s (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT, attrs TEXT)"
    )
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        batch = []
        for email, name, city, plan in reader:
            batch.append((email.lower(), name, f'{{"city": "{city}", "plan": "{plan}"}}'))
            if len(batch) >= 2000:
                conn.executemany("INSERT INTO s (email, name, attrs) VALUES (?, ?, ?)", batch)
                conn.commit()
                batch = []
        conn.executemany("INSERT INTO s (email, name, attrs) VALUES (?, ?, ?)", batch)
        conn.commit()
    conn.close()
    return time.perf_counter() - start


def reference_postgres(path: Path, url: str) -> float:
    """Bare PostgreSQL: the same rows into one table, 5,000 per ``unnest`` statement."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE s (id SERIAL PRIMARY KEY, email TEXT UNIQUE, name TEXT, attrs JSON)"
        )
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        batch: list[tuple[str, str, str]] = []
        for email, name, city, plan in reader:
            batch.append((email.lower(), name, f'{{"city": "{city}", "plan": "{plan}"}}'))
            if len(batch) >= 5000:
                _pg_batch(engine, batch)
                batch = []
        _pg_batch(engine, batch)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def _pg_batch(engine: Engine, batch: list[tuple[str, str, str]]) -> None:
    if not batch:
        return
    emails, names, attrs = (list(c) for c in zip(*batch, strict=True))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO s (email, name, attrs) SELECT e, n, a::json "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(e, n, a)",
            (emails, names, attrs),
        )


def peak_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def postgres_schema_url(base: str) -> tuple[str, Callable[[], None]]:
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--postgres-url", help="e.g. postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        full, quarter = tmp / "full.csv", tmp / "quarter.csv"
        generate(full, args.rows)
        generate(quarter, args.rows // 4)
        size_mb = full.stat().st_size / 1e6
        print(f"file: {args.rows} rows, {size_mb:.1f} MB")

        def median(values: list[float]) -> float:
            return statistics.median(values)

        t_csv = median([reference_csv(full) for _ in range(args.repeat)])
        t_ref = median(
            [reference_executemany(full, tmp / f"ref{i}.db") for i in range(args.repeat)]
        )
        runs = [run_import(f"sqlite:///{tmp / f'bench{i}.db'}", full) for i in range(args.repeat)]
        t_sqlite, rows = median([t for t, _ in runs]), runs[0][1]
        print(f"(median of {args.repeat} runs each)")
        print(f"reference csv parse only      {rows / t_csv:>10,.0f} rows/s")
        print(f"reference bare executemany    {rows / t_ref:>10,.0f} rows/s")
        print(
            f"import into SQLite            {rows / t_sqlite:>10,.0f} rows/s  "
            f"({t_sqlite:.2f} s; {t_ref / t_sqlite:.2f}x the bare executemany, "
            f"goal >= 25,000 rows/s)"
        )
        if args.postgres_url:
            t_pg_ref: list[float] = []
            t_pg: list[float] = []
            for _ in range(args.repeat):
                url, drop = postgres_schema_url(args.postgres_url)
                try:
                    t_pg_ref.append(reference_postgres(full, url))
                finally:
                    drop()
                url, drop = postgres_schema_url(args.postgres_url)
                try:
                    t_pg.append(run_import(url, full)[0])
                finally:
                    drop()
            pg_ref, pg = median(t_pg_ref), median(t_pg)
            print(f"reference bare PostgreSQL     {rows / pg_ref:>10,.0f} rows/s")
            print(
                f"import into PostgreSQL        {rows / pg:>10,.0f} rows/s  "
                f"({pg:.2f} s; {pg_ref / pg:.2f}x the bare insert)"
            )

        mem_q = peak_memory(lambda: run_import(f"sqlite:///{tmp / 'mq.db'}", quarter))
        mem_f = peak_memory(lambda: run_import(f"sqlite:///{tmp / 'mf.db'}", full))
        print(
            f"peak traced memory: {mem_q / 1e6:.1f} MB at {args.rows // 4} rows, "
            f"{mem_f / 1e6:.1f} MB at {args.rows} rows (ratio {mem_f / mem_q:.2f} for 4x the rows)"
        )


if __name__ == "__main__":
    main()
