"""Which webhook URLs are allowed.

    MURANO_WEBHOOK_ALLOW unset      any http(s) host whose addresses are all public
    MURANO_WEBHOOK_ALLOW=a,*.b.com  only hosts matching a pattern (shell-style, on the
                                    host name or literal address, case-insensitive)

Whatever the list, a host that is or resolves to a private, loopback, link-local,
multicast, reserved or unspecified address is refused unless a pattern other than a bare
`*` names it: the server must not become a way into the operator's own network. The check
runs when a job is created (a 400) and again before every delivery attempt, since DNS
answers change.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from murano.errors import InvalidRequest

__all__ = ["UrlPolicy"]

FIELD = "webhook_url"


class UrlPolicy:
    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [p.strip().lower() for p in patterns if p.strip()]

    async def check(self, url: str) -> None:
        """InvalidRequest naming `webhook_url` when the URL may not be called."""
        host = self._host(url)
        listed = any(fnmatch.fnmatchcase(host, p) for p in self.patterns)
        if self.patterns and not listed:
            raise InvalidRequest(
                FIELD, f"webhook_url host {host!r} is not allowed by this server's allowlist."
            )
        named = any(p != "*" and fnmatch.fnmatchcase(host, p) for p in self.patterns)
        if named:
            return
        for address in await _addresses(host):
            if not address.is_global or address.is_multicast:
                raise InvalidRequest(
                    FIELD,
                    f"webhook_url host {host!r} is a private or local address; the operator "
                    "must list it in MURANO_WEBHOOK_ALLOW.",
                )

    @staticmethod
    def _host(url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            raise InvalidRequest(FIELD, "webhook_url is not a valid URL.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(FIELD, "webhook_url must be an absolute http or https URL.")
        if parts.username or parts.password:
            raise InvalidRequest(FIELD, "webhook_url must not carry credentials.")
        return parts.hostname.lower()


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest(FIELD, f"webhook_url host {host!r} does not resolve.") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]
