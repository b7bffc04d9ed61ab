"""The SSRF guard: no private, loopback, link-local or multicast destinations unless allowed."""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class DestinationRefused(Exception):
    """A destination the guard refuses; never retried."""


def refused_address(address: str) -> str | None:
    """Why an IP address is not a public destination, or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                        ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                        ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return f"{address} is a {label} address"
    return None


@functools.lru_cache(maxsize=1024)
def check_url(url: str, allow_http: bool, allow_private: bool) -> None:
    """Refuse a URL before connecting: its scheme, and its host when it is a literal IP
    (aiohttp does not consult the resolver for those)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_http):
        raise DestinationRefused(f"{parts.scheme}:// is refused (https only unless allow_http)")
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    if not allow_private:
        problem = refused_address(host)
        if problem:
            raise DestinationRefused(f"{problem} (set allow_private to permit it)")


class GuardedResolver(AbstractResolver):
    """Resolves names, then refuses any answer that is not public, so a public-looking
    name that resolves to 127.0.0.1 is checked on the address actually connected to."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            problem = refused_address(result["host"])
            if problem:
                raise DestinationRefused(f"{host} resolves to {problem} "
                                         "(set allow_private to permit it)")
        return results

    async def close(self) -> None:
        await self._inner.close()


def is_refusal(exc: BaseException) -> DestinationRefused | None:
    """The guard's refusal behind an aiohttp connection error, if that is what it was."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DestinationRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
