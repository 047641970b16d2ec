"""Who the client is: proxy headers count only from configured proxies, and only uvicorn reads
them (``server.trusted_proxies``); rtserve's own code never parses them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rtserve
from rtserve.settings import Settings, SettingsError

#: Headers that claim a client address on a request's behalf.
PROXY_HEADERS = {"x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded", "x-client-ip"}


def test_no_proxy_header_is_trusted_by_default():
    assert Settings.load().server.trusted_proxies == []


def test_trusted_proxies_are_addresses_or_networks_written_as_uvicorn_reads_them():
    settings = Settings.load(
        server__trusted_proxies=[" 10.0.0.7 ", "10.1.2.3/16", "0:0:0:0:0:0:0:1"]
    )
    assert settings.server.trusted_proxies == ["10.0.0.7", "10.1.0.0/16", "::1"]


@pytest.mark.parametrize("entry", ["*", "proxy.internal", "10.0.0.300", "10.0.0.0/99"])
def test_anything_else_is_refused_at_start(entry):
    with pytest.raises(SettingsError, match="is not an IP address or network"):
        Settings.load(server__trusted_proxies=[entry])


def test_the_environment_can_name_the_proxies(monkeypatch):
    monkeypatch.setenv("RTSERVE_SERVER__TRUSTED_PROXIES", '["192.0.2.10", "198.51.100.0/24"]')
    assert Settings.load().server.trusted_proxies == ["192.0.2.10", "198.51.100.0/24"]


def test_no_rtserve_code_reads_a_proxy_header_itself():
    """A client address taken from a header must come from uvicorn's proxy handling, which
    honours ``server.trusted_proxies``; code that read the header itself would trust every caller."""
    source = Path(rtserve.__file__).parent
    readers = []
    for path in sorted(source.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                value = (
                    node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
                )
                if value.strip().lower() in PROXY_HEADERS:
                    readers.append(f"{path.relative_to(source)}:{node.lineno}")
    assert readers == []
