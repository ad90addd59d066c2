"""Helpers for the dashboard tests: editors' accounts and signing in through the real form."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.passwords import hash_password
from newsletter.store.accounts import add_editor

PASSWORD = "correct horse battery staple"
EDITOR = "editor@test.example"


def make_editor(
    engine: Engine,
    email: str = EDITOR,
    password: str = PASSWORD,
    *,
    lists: list[str] | None = None,
) -> None:
    with engine.begin() as conn:
        add_editor(conn, email, hash_password(password), lists=lists, now=datetime.now(UTC))


def login_token(client: TestClient) -> str:
    page = client.get("/admin/login")
    assert page.status_code == 200
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def sign_in(client: TestClient, email: str = EDITOR, password: str = PASSWORD) -> object:
    token = login_token(client)
    return client.post(
        "/admin/login",
        data={"login_token": token, "email": email, "password": password, "next": "/admin"},
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)
