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


# --- lease owners -----------------------------------------------------------------------------


def test_an_owner_names_host_pid_start_time_and_a_nonce() -> None:
    import os

    from newsletter.locks import Owner, new_owner, owner_gone, process_start

    owner = new_owner()
    parsed = Owner.parse(owner)
    assert parsed is not None
    assert parsed.pid == os.getpid()
    found = process_start(os.getpid())
    assert found is not None
    assert parsed.start == found[1]
    assert len(owner) <= 100  # deliveries.lease_owner
    assert new_owner() != owner  # the nonce: two engines in one process differ
    assert owner_gone(owner) is False


def test_a_zombie_a_reaped_process_and_a_reused_pid_are_gone() -> None:
    import os
    import time

    from newsletter.locks import new_owner, owner_gone, process_start

    host = new_owner().rsplit(":", 3)[0]
    child = subprocess.Popen(["sleep", "30"])
    try:
        found = process_start(child.pid)
        assert found is not None
        owner = f"{host}:{child.pid}:{found[1]}:00000000"
        assert owner_gone(owner) is False
        child.kill()
        for _ in range(500):
            if (process_start(child.pid) or ("", ""))[0] == "Z":
                break
            time.sleep(0.01)
        # killed, not yet reaped: the pid still exists, as a zombie
        assert process_start(child.pid) is not None
        assert owner_gone(owner) is True
    finally:
        child.wait()
    assert owner_gone(owner) is True
    # the parent is alive, but not the process that started at another time under its pid
    parent = process_start(os.getppid())
    assert parent is not None
    ticks, _, boot = parent[1].partition(".")
    assert owner_gone(f"{host}:{os.getppid()}:{parent[1]}:00000000") is False
    assert owner_gone(f"{host}:{os.getppid()}:{int(ticks) + 1}.{boot}:00000000") is True
    # this very pid with another start time: the last container's PID 1, say
    assert owner_gone(f"{host}:{os.getpid()}:1.{boot}:00000000") is True


def test_owners_this_host_cannot_judge_are_not_gone() -> None:
    import os

    from newsletter.locks import new_owner, owner_gone

    host = new_owner().rsplit(":", 3)[0]
    assert owner_gone(f"elsewhere.example:{os.getpid()}:1.00000000:00000000") is False
    # written before start times were recorded: judged by the pid alone, as before
    assert owner_gone(f"{host}:{os.getppid()}:abcd0123") is False
    assert owner_gone("not an owner") is False
    assert owner_gone("") is False
