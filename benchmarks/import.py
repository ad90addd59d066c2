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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process only: on a busy machine, the fairer figure for SQLite


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


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


def run_import(url: str, path: Path) -> tuple[Timing, int]:
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
    with Stopwatch() as sw:
        report = import_csv(
            engine, path, list_id=list_id, list_slug="weekly", on_reject=rejects.append
        )
    engine.dispose()
    assert report.added == report.rows, report
    assert not rejects, rejects[:3]
    return sw.timing, report.rows


def reference_csv(path: Path) -> Timing:
    with Stopwatch() as sw, path.open(encoding="utf-8", newline="") as fh:
        for _ in csv.reader(fh):
            pass
    return sw.timing


def reference_executemany(path: Path, db: Path) -> Timing:
    with Stopwatch() as sw:
        _bare_sqlite(path, db)
    return sw.timing


def _bare_sqlite(path: Path, db: Path) -> None:
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


def reference_postgres(path: Path, url: str) -> Timing:
    """Bare PostgreSQL: the same rows into one table, 5,000 per ``unnest`` statement."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    sw = Stopwatch().__enter__()
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
    sw.__exit__()
    engine.dispose()
    return sw.timing


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

        def median(timings: list[Timing]) -> Timing:
            return Timing(
                statistics.median(t.wall for t in timings),
                statistics.median(t.cpu for t in timings),
            )

        n = args.repeat
        csv_t = median([reference_csv(full) for _ in range(n)])
        ref = median([reference_executemany(full, tmp / f"ref{i}.db") for i in range(n)])
        runs = [run_import(f"sqlite:///{tmp / f'bench{i}.db'}", full) for i in range(n)]
        ours, rows = median([t for t, _ in runs]), runs[0][1]
        print(f"median of {n} runs each; rows/s by wall clock, and per CPU-second of this process")
        print(f"{'':30}{'wall':>12}{'cpu':>12}")
        for label, t in (
            ("reference csv parse only", csv_t),
            ("reference bare executemany", ref),
            ("import into SQLite", ours),
        ):
            print(f"{label:30}{rows / t.wall:>12,.0f}{rows / t.cpu:>12,.0f}")
        print(
            f"import / bare executemany: {ref.wall / ours.wall:.2f}x wall, "
            f"{ref.cpu / ours.cpu:.2f}x cpu (goal: >= 25,000 rows/s on SQLite)"
        )
        if args.postgres_url:
            pg_ref: list[Timing] = []
            pg: list[Timing] = []
            for _ in range(n):
                url, drop = postgres_schema_url(args.postgres_url)
                try:
                    pg_ref.append(reference_postgres(full, url))
                finally:
                    drop()
                url, drop = postgres_schema_url(args.postgres_url)
                try:
                    pg.append(run_import(url, full)[0])
                finally:
                    drop()
            r, o = median(pg_ref), median(pg)
            # the server's CPU is not in process_time, so wall clock only here
            print(f"{'reference bare PostgreSQL':30}{rows / r.wall:>12,.0f}")
            print(f"{'import into PostgreSQL':30}{rows / o.wall:>12,.0f}")
            print(f"import / bare insert: {r.wall / o.wall:.2f}x wall")

        mem_q = peak_memory(lambda: run_import(f"sqlite:///{tmp / 'mq.db'}", quarter))
        mem_f = peak_memory(lambda: run_import(f"sqlite:///{tmp / 'mf.db'}", full))
        print(
            f"peak traced memory: {mem_q / 1e6:.1f} MB at {args.rows // 4} rows, "
            f"{mem_f / 1e6:.1f} MB at {args.rows} rows (ratio {mem_f / mem_q:.2f} for 4x the rows)"
        )


if __name__ == "__main__":
    main()
