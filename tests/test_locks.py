"""The scheduler's database lock: one holder at a time, across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.errors import SchedulerError
from newsletter.locks import lock_file_path, try_lock
from newsletter.store.database import make_engine


def test_second_holder_is_refused_until_release(engine: Engine) -> None:
    with try_lock(engine) as first:
        assert first is True
        with try_lock(engine) as second:
            assert second is False
    with try_lock(engine) as again:
        assert again is True


def test_lock_is_released_when_the_block_raises(engine: Engine) -> None:
    def hold_and_fail() -> None:
        with try_lock(engine) as held:
            assert held
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        hold_and_fail()
    with try_lock(engine) as again:
        assert again is True


def test_threads_contend_and_exactly_one_wins(engine: Engine) -> None:
    barrier = threading.Barrier(4)
    release = threading.Event()
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        with try_lock(engine) as acquired:
            with lock:
                results.append(acquired)
            if acquired:
                # hold until everyone has tried
                release.wait(10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        with lock:
            if len(results) == 4:
                break
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False, False, False, True]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from newsletter.locks import try_lock
    from newsletter.store.database import make_engine
    engine = make_engine(sys.argv[1])
    with try_lock(engine) as acquired:
        print("held" if acquired else "busy", flush=True)
        if acquired:
            sys.stdin.readline()
    """
)


def _holder(database_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_another_process_holding_the_lock_blocks_this_one(database_url: str) -> None:
    engine = make_engine(database_url)
    with _holder(database_url) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            assert proc.stdout.readline().strip() == "held"
            with try_lock(engine) as acquired:
                assert acquired is False
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    with try_lock(engine) as acquired:
        assert acquired is True
    engine.dispose()


def test_a_killed_holder_does_not_wedge_the_lock(database_url: str) -> None:
    with _holder(database_url) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        proc.kill()
        proc.wait()
    engine = make_engine(database_url)
    # PostgreSQL ends the dead session's locks; the kernel drops a dead process's flock
    for _ in range(100):
        with try_lock(engine) as acquired:
            if acquired:
                break
        threading.Event().wait(0.05)
    engine.dispose()
    assert acquired is True


def test_sqlite_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'news.db'}")
    assert lock_file_path(engine) == tmp_path / "news.db.scheduler.lock"
    with try_lock(engine) as acquired:
        assert acquired
        assert (tmp_path / "news.db.scheduler.lock").exists()


def test_in_memory_sqlite_is_refused() -> None:
    engine = make_engine("sqlite:///:memory:")
    with pytest.raises(SchedulerError, match="in-memory"), try_lock(engine):
        pass
