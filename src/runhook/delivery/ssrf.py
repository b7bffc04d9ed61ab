"""The SSRF guard: no private, loopback, link-local or multicast destinations unless allowed.

Three checks, each on what the client really uses: the URL's host as aiohttp parses it
(`check_url`, before an attempt), every name's resolved addresses (`GuardedResolver`),
and every socket's destination (`connector`'s socket factory, which also sees the
literal addresses aiohttp connects to without asking a resolver)."""

from __future__ import annotations

import functools
import socket
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from runhook.config.destinations import ALLOW_PRIVATE, refused_address, url_problem

__all__ = ["DestinationRefused", "GuardedResolver", "check_url", "connector", "is_refusal",
           "refused_address"]


class DestinationRefused(OSError):
    """A destination the guard refuses; never retried. An OSError so that, raised
    while connecting, it travels through aiohttp and aiohappyeyeballs intact."""


@functools.lru_cache(maxsize=1024)
def check_url(url: str, allow_http: bool, allow_private: bool) -> None:
    """Refuse a URL before connecting: its scheme, a host in a spelling the client
    would read differently, and a literal IP host that is not public."""
    problem = url_problem(url, allow_http, allow_private)
    if problem is not None:
        raise DestinationRefused(problem)


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
                raise DestinationRefused(f"{host} resolves to {problem} ({ALLOW_PRIVATE})")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _public_socket(addr_info: AddrInfoType) -> socket.socket:
    """The socket for one connection, refused when its destination is not public.
    The message names no address: aiohappyeyeballs re-raises the first error as is
    only when every address failed with the same text, keeping it a refusal."""
    family, type_, proto, _, address = addr_info
    if refused_address(str(address[0])) is not None:
        raise DestinationRefused(f"a connection to a non-public address ({ALLOW_PRIVATE})")
    return socket.socket(family=family, type=type_, proto=proto)


def connector(limit: int, allow_private: bool) -> aiohttp.TCPConnector:
    """A connector for one integration: guarded unless it sets allow_private."""
    if allow_private:
        return aiohttp.TCPConnector(limit=limit)
    return aiohttp.TCPConnector(limit=limit, resolver=GuardedResolver(),
                                socket_factory=_public_socket)


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
