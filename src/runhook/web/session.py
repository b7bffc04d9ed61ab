"""The console's login, as Jupyter's: a token in a file only the socket's owner and group
can read, a login URL that trades it for an HttpOnly cookie, and a session needed by
every page, form and /api route (health, readiness and metrics stay open)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from runhook.web.html import ENV

log = logging.getLogger("runhook.http")

# No secret and no action: a monitor scrapes them without logging in.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/login"})
# A daemon started with `--config FILE` (`make run`) has its socket, and its login
# file, where FILE says: `runhook console` needs the same --config to find them.
LOGIN_HINT = ("run `runhook console --config FILE` (FILE: the file the daemon runs on) on "
              "this machine as a user of the events socket")


class Login:
    """The login token of one console. It lives in `path` (`<socket>.console`, JSON with
    the console's URL and the token), created when the console listens, replaced on
    `rotate()` and removed when it stops. A session cookie is an HMAC of the token:
    a new token refuses every cookie of the old one."""

    def __init__(self, socket: str, socket_mode: int, address: str) -> None:
        self.path = Path(f"{socket}.console")
        # Read by whoever may use the socket: its owner, and its group when the socket
        # lets the group in; never the others (0640 at most).
        self.mode = 0o640 if socket_mode & 0o060 else 0o600
        self.url = f"http://{address}/"
        # Per port: two consoles on one host keep their own cookies.
        self.cookie = f"runhook-console-{address.rpartition(':')[2]}"
        self.token = ""
        self._session = b""

    def rotate(self) -> None:
        """A new token, written atomically (a reader sees the old file or the new one,
        never a part); from now on only its sessions are let in."""
        token = secrets.token_urlsafe(32)
        body = msgspec.json.encode({"url": self.url, "token": token}) + b"\n"
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        try:
            os.fchmod(fd, self.mode)  # whatever the umask
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self.token = token
        self._session = _session_of(token)
        log.info("console login token written to %s", self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def has_session(self, request: web.Request) -> bool:
        """A cookie made from the current token, or the token itself as
        `Authorization: Bearer` (curl and scripts on the JSON API)."""
        if not self.token:
            return False
        cookie = request.cookies.get(self.cookie, "")
        if hmac.compare_digest(cookie.encode(), self._session.hex().encode()):
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                  self.token.encode())

    def middleware(self) -> Middleware:
        @web.middleware
        async def session(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in OPEN_PATHS or self.has_session(request):
                return await handler(request)
            return refused(request)

        return session

    async def login(self, request: web.Request) -> web.Response:
        """GET /login?token=...&next=/path: a cookie for the right token, then the page
        without the token in its URL."""
        given = request.query.get("token", "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _page("Wrong or old login token", "That login link is not (or no longer) "
                         f"this console's: {LOGIN_HINT} for a new one.")
        after = request.query.get("next", "/")
        # Only a path on this console: "//evil.example" is another site to a browser.
        if not after.startswith("/") or after.startswith("//") or "\\" in after:
            after = "/"
        response = web.Response(status=303,
                                headers={"Location": quote(after, safe="/?&=%:@-._~+,;")})
        response.set_cookie(self.cookie, self._session.hex(), httponly=True, samesite="Strict",
                            path="/")
        return response


def _session_of(token: str) -> bytes:
    return hmac.new(token.encode(), b"runhook console session", hashlib.sha256).digest()


def refused(request: web.Request) -> web.Response:
    """401: for a page, a short HTML page that says how to log in; for the API and a
    POST, JSON. Nothing was read or done."""
    if request.method in ("GET", "HEAD") and not request.path.startswith("/api/"):
        return _page("Log in to the runhook console",
                     f"This console needs a session: {LOGIN_HINT}, and open the login "
                     "URL it prints.")
    return web.json_response({"error": f"not logged in to the console: {LOGIN_HINT}"},
                             status=401)


def _page(title: str, text: str) -> web.Response:
    body = ENV.get_template("login.html").render(title=title, text=text)
    return web.Response(text=body, status=401, content_type="text/html")
