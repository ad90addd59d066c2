"""Editors' accounts and their server-side sessions for the dashboard (``/admin``).

A session id is 32 random bytes the browser holds in a cookie; the table keeps only its
SHA-256, so a copy of the database (a backup, a leak) logs nobody in. Each session has a
fixed end (``session_hours`` after login) and an idle end; both are checked on every use.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from newsletter.errors import StoreError
from newsletter.store.schema import admin_sessions, admin_users

# seen_at is written at most this often: a dashboard polling every second writes nothing
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Editor:
    id: int
    email: str
    # the lists this editor may see; None: all of them, and person-wide actions
    lists: tuple[str, ...] | None
    password_hash: str = ""

    def may_see(self, list_slug: str) -> bool:
        return self.lists is None or list_slug in self.lists

    @property
    def everything(self) -> bool:
        return self.lists is None


@dataclass(frozen=True)
class Session:
    editor: Editor
    csrf_token: str
    expires_at: datetime


def _editor(row: object) -> Editor:
    lists = getattr(row, "lists", None)
    return Editor(
        id=row.id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
        lists=tuple(lists) if lists is not None else None,
        password_hash=row.password_hash,  # type: ignore[attr-defined]
    )


def _key(email: str) -> str:
    return email.strip().lower()


def add_editor(
    conn: Connection,
    email: str,
    password_hash: str,
    *,
    lists: Sequence[str] | None,
    now: datetime,
    replace: bool = False,
) -> Editor:
    """Create the account (or, with ``replace``, set its password and lists, ending sessions)."""
    found = find_editor(conn, email)
    if found is not None and not replace:
        raise StoreError(f"{_key(email)} already has an account; use --reset to change it")
    values = {"password_hash": password_hash, "lists": list(lists) if lists is not None else None}
    if found is None:
        conn.execute(admin_users.insert().values(email=_key(email), created_at=now, **values))
    else:
        conn.execute(update(admin_users).where(admin_users.c.id == found.id).values(**values))
        end_sessions(conn, found.id)
    editor = find_editor(conn, email)
    assert editor is not None
    return editor


def find_editor(conn: Connection, email: str) -> Editor | None:
    row = conn.execute(select(admin_users).where(admin_users.c.email == _key(email))).first()
    return None if row is None else _editor(row)


def editors(conn: Connection) -> list[tuple[Editor, datetime, datetime | None]]:
    """Every account with when it was made and last logged in."""
    rows = conn.execute(select(admin_users).order_by(admin_users.c.email))
    return [(_editor(r), r.created_at, r.last_login_at) for r in rows]


def remove_editor(conn: Connection, email: str) -> bool:
    return bool(
        conn.execute(delete(admin_users).where(admin_users.c.email == _key(email))).rowcount
    )


def set_password_hash(conn: Connection, editor_id: int, password_hash: str) -> None:
    conn.execute(
        update(admin_users).where(admin_users.c.id == editor_id).values(password_hash=password_hash)
    )


# --- sessions ---------------------------------------------------------------------------------


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def start_session(
    conn: Connection, editor: Editor, *, now: datetime, lifetime: timedelta
) -> tuple[str, Session]:
    """A new session for ``editor``: (the id for the cookie, the session)."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        admin_sessions.insert().values(
            id_hash=_hash(session_id),
            user_id=editor.id,
            csrf_token=csrf,
            created_at=now,
            seen_at=now,
            expires_at=now + lifetime,
        )
    )
    conn.execute(update(admin_users).where(admin_users.c.id == editor.id).values(last_login_at=now))
    # expired sessions of anyone go when someone logs in: the table stays small
    conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at < now))
    return session_id, Session(editor, csrf, now + lifetime)


def load_session(
    conn: Connection, session_id: str, *, now: datetime, idle: timedelta
) -> Session | None:
    """The live session ``session_id`` names, or None (unknown, expired, idle too long)."""
    if not session_id or len(session_id) > 100:
        return None
    s = admin_sessions.c
    row = conn.execute(
        select(s.id_hash, s.csrf_token, s.seen_at, s.expires_at, admin_users)
        .join(admin_users, admin_users.c.id == s.user_id)
        .where(s.id_hash == _hash(session_id))
    ).first()
    if row is None:
        return None
    if now >= row.expires_at or now - row.seen_at >= idle:
        conn.execute(delete(admin_sessions).where(s.id_hash == row.id_hash))
        return None
    if now - row.seen_at >= _TOUCH_EVERY:
        conn.execute(update(admin_sessions).where(s.id_hash == row.id_hash).values(seen_at=now))
    return Session(_editor(row), row.csrf_token, row.expires_at)


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(admin_sessions).where(admin_sessions.c.id_hash == _hash(session_id)))


def end_sessions(conn: Connection, editor_id: int) -> None:
    conn.execute(delete(admin_sessions).where(admin_sessions.c.user_id == editor_id))
