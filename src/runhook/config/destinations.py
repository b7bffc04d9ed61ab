"""Where deliveries may go: a URL's host as the HTTP client will connect to it, and the rules
for it (pure; settings applies them at load, the SSRF guard before every attempt)."""

from __future__ import annotations

import ipaddress
import re

from yarl import URL

# A host whose last label is a number (decimal, or 0x hex) is an IPv4 address in the
# URL standard, and the system resolver (inet_aton) reads 2130706433, 127.1, 0,
# 0x7f.0.0.1 and 0177.0.0.1 as addresses. Only the canonical a.b.c.d is accepted:
# what the guard checks must be what the client connects to.
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
# A host name as yarl leaves it (lowercase, IDNA labels already in ASCII), at most one
# trailing dot; underscores occur in internal names.
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
ALLOW_PRIVATE = "set allow_private to permit it"


def connection_host(url: str) -> tuple[str, str]:
    """(scheme, host) as aiohttp will use them: yarl parses the URL, lowercases and
    IDNA-encodes the host (full-width digits and ideographic full stops become
    ASCII), so `http://１２７。０.０.１/` connects to 127.0.0.1. ValueError if unparsable."""
    parsed = URL(url)  # UnicodeError (bad IDNA) is a ValueError
    return parsed.scheme, parsed.raw_host or ""


def address_kind(address: str) -> str | None:
    """What makes an IP address non-public ("loopback", "private", …), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                        ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                        ("reserved", ip.is_reserved), ("private", ip.is_private),
                        # e.g. 100.64.0.0/10, where some clouds keep their metadata service
                        ("non-global", not ip.is_global)):
        if flag:
            return label
    return None


def _shown(address: str) -> str:
    """An address as a person reads it: an IPv4-mapped IPv6 address as its IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else address


def refused_address(address: str) -> str | None:
    """Why an IP address is not a public destination, or None when it is."""
    kind = address_kind(address)
    return None if kind is None else f"{_shown(address)} is a {kind} address"


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def host_problem(host: str, allow_private: bool, secret: bool = False) -> str | None:
    """Why a connection host is refused, or None. `secret` hosts (from a secret URL)
    are never quoted in the answer."""
    shown = "its host" if secret else repr(host)
    if not host:
        return "the URL has no host"
    if _literal(host):
        kind = None if allow_private else address_kind(host)
        if kind is None:
            return None
        return f"{'its host' if secret else _shown(host)} is a {kind} address ({ALLOW_PRIVATE})"
    if _NUMBER.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        return f"{shown} is not a canonical IPv4 address (write it as four decimal numbers, " \
               "a.b.c.d, with no trailing dot)"
    if not _NAME.fullmatch(host):
        return f"{shown} is not a valid host name"
    return None


def url_problem(url: str, allow_http: bool, allow_private: bool,
                secret: bool = False) -> str | None:
    """Why a delivery URL is refused, or None. Literal IP hosts are judged here (the
    client connects to them without asking a resolver); names, when resolved."""
    try:
        scheme, host = connection_host(url)
    except ValueError:
        return "not a valid URL"
    if scheme not in ("http", "https"):
        return "expected an http(s) URL"
    if scheme == "http" and not allow_http:
        return "plain http needs allow_http = true on the integration (https only)"
    return host_problem(host, allow_private, secret)
