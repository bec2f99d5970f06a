"""The playground's files and headers, through the ASGI app: what is served, under which
Content-Security-Policy, and that nothing on the page comes from elsewhere or runs inline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from murano.api.playground import CONTENT_SECURITY_POLICY
from tests.conftest import FakeEngineParts, fake_engine, make_settings, running

STATIC = Path(__file__).parents[2] / "murano" / "playground" / "static"


async def test_index_is_served_with_a_strict_policy(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        page = await client.get("/")
        script = await client.get("/playground/app.js")
        style = await client.get("/playground/style.css")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<label for="prompt">Prompt</label>' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    for response in (page, script, style):
        policy = response.headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["index.html", "app.js", "style.css"])
def test_nothing_inline_and_nothing_from_elsewhere(name: str) -> None:
    text = (STATIC / name).read_text()
    # Every URL the page loads is the server's own: no CDN, no fonts, no analytics.
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert not re.search(r"url\((['\"]?)(https?:)?//", text)
    assert not re.search(r"@import", text)
    if name == "index.html":
        scripts = re.findall(r"<script\b[^>]*>", text)
        assert scripts and all("src=" in tag for tag in scripts)  # no inline script
        assert not re.search(r"\son[a-z]+=", text)  # no inline handlers
        assert not re.search(r"\sstyle=", text)  # no inline style
        assert "<style" not in text


async def test_config_says_whether_a_key_is_needed(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        with_auth = (await client.get("/playground/config.json")).json()
    async with running(make_settings(tmp_path, auth=False), fake_engine(parts)) as client:
        without = (await client.get("/playground/config.json")).json()
    assert with_auth["authRequired"] is True
    assert without["authRequired"] is False


async def test_unknown_file_is_404(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        response = await client.get("/playground/..%2Fapi%2Fplayground.py")
        other = await client.get("/playground/secrets.txt")
    assert response.status_code == 404
    assert other.status_code == 404
    assert other.json() == {"error": "Not Found"}


async def test_playground_can_be_turned_off(
    tmp_path: Path, parts: FakeEngineParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MURANO_PLAYGROUND", "false")
    settings = make_settings(tmp_path)
    assert settings.playground is False
    async with running(settings, fake_engine(parts)) as client:
        page = await client.get("/")
        script = await client.get("/playground/app.js")
        config = await client.get("/playground/config.json")
        models = await client.get("/api/v1/models?type=image")
    assert (page.status_code, script.status_code, config.status_code) == (404, 404, 404)
    assert models.status_code == 200
