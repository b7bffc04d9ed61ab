"""What keeps the console's pages and actions to people at this machine: the Host
must be a loopback name (a DNS-rebinding page reaches 127.0.0.1 under its own name),
a POST must come from the console itself (Origin, Fetch metadata) and carry the CSRF
token, and every answer forbids framing and outside resources."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("runhook.http")

# Names a browser on this machine reaches the loopback server by. Not "localhost."
# nor any other name: a rebinding attacker's page sends its own domain here.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# A Host header as RFC 7230 has it: a bracketed IPv6 literal or a name, then at most
# ":digits". Anything else ("[::1]evil.com", "localhost:80@evil.com") is refused whole.
HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?")
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
HEADERS = {
    # No script, no outside resource, no framing (clickjacking a "redeliver" button),
    # forms post only back here.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class BadForm(Exception):
    """A POSTed body that does not parse as the form it says it is (answered 400)."""


class Guard:
    """One per server: it holds the CSRF token, a random value made at start. Pages
    put it in every form; a cross-site page cannot read it (same-origin policy, and
    the Host check stops rebinding), so it cannot forge a POST that carries it."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)

    def middleware(self) -> Middleware:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            refusal = self.refusal(request)
            if refusal is not None:
                log.warning("HTTP %s %s refused: %s", request.method, request.path, refusal)
                response: web.StreamResponse = web.Response(status=403,
                                                            text=f"refused: {refusal}\n")
            else:
                try:
                    response = await handler(request)
                except BadForm as exc:
                    response = web.Response(status=400, text=f"bad form: {exc}\n")
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return guard

    def refusal(self, request: web.Request) -> str | None:
        """Why the request is refused before any handler runs, or None."""
        host = request.headers.get("Host", "")
        if _hostname(host) not in LOOPBACK_NAMES:
            return f"Host {host[:100]!r} is not a loopback name (127.0.0.1, localhost, [::1])"
        if request.method in ("GET", "HEAD"):
            return None
        if request.method != "POST":
            return "method not allowed"
        if request.path.startswith("/api/"):
            # The JSON API's POSTs (silences) are for curl and scripts: no console page,
            # no form. They must be application/json with no foreign Origin, which a
            # cross-site page cannot send without a preflight nothing here answers
            # (web/silences.py checks both).
            return None
        return self._foreign(request, host)

    def _foreign(self, request: web.Request, host: str) -> str | None:
        """Why a POST did not come from a console page on this same origin."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            return f"Sec-Fetch-Site is {site[:40]!r}: a POST must come from a console page"
        origin = request.headers.get("Origin")
        if origin is None:
            # Browsers send Origin with every POST; Referer is the fallback for old ones.
            referer = request.headers.get("Referer")
            if referer is None:
                return "no Origin: a POST must come from a console page"
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin != f"http://{host}":
            return f"Origin {origin[:100]!r} is not this console (http://{host})"
        if request.content_type not in FORM_TYPES:
            return "a POST must be a form"
        return None

    async def checked_form(self, request: web.Request) -> dict[str, str] | None:
        """The POSTed form if its CSRF token is ours, else None."""
        try:
            form = await request.post()
        except (ValueError, LookupError, HttpProcessingError) as exc:
            # aiohttp's multipart and urlencoded readers raise these for a body that
            # is not what its Content-Type says (no boundary, a bad part header, an
            # unknown charset). Plain text, cut short: it goes back to its own sender.
            message = getattr(exc, "message", None) or str(exc)
            raise BadForm(f"{request.content_type} body does not parse: "
                          f"{str(message).strip()[:200]}") from None
        given = form.get("csrf")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(),
                                                                 self.token.encode()):
            return None
        return {k: v for k, v in form.items() if isinstance(v, str)}


def _hostname(host: str) -> str:
    """The Host header's name without its port, lower-case ("[::1]" keeps brackets);
    "" for anything that is not a name or an IPv6 literal with an optional port."""
    match = HOST.fullmatch(host.lower())
    return match.group(1) if match else ""
