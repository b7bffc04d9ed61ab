"""One SMTP submission over aiosmtplib, behind the same SSRF guard as HTTP: the relay's
name is resolved here, every address checked, and the connection opened to a checked
address (aiosmtplib gets the socket; the TLS certificate is still checked against the
name). Failures are described without the password or the server's full greeting."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiosmtplib
import anyio

from runhook.config.destinations import ALLOW_PRIVATE, refused_address
from runhook.config.secrets import Redactor
from runhook.core import constants
from runhook.delivery import transport
from runhook.delivery.channels.email import Mail
from runhook.delivery.ssrf import DestinationRefused

SERVER = "the mail server"


async def connect(host: str, port: int, allow_private: bool, timeout: float) -> socket.socket:
    """A TCP connection to `host`, refused when any of its addresses is not public
    (unless `allow_private`): a public name resolving to 10.0.0.5 is refused."""
    # The loop's socket calls: aiosmtplib takes a connected socket, not an anyio stream.
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not allow_private:
        for *_, address in infos:
            problem = refused_address(str(address[0]))
            if problem:
                raise DestinationRefused(f"the mail server's host resolves to {problem} "
                                         f"({ALLOW_PRIVATE})")
    last: OSError = OSError("no address")
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            with anyio.fail_after(timeout):
                await loop.sock_connect(sock, address)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else TimeoutError()
    raise last


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificates and host names are always checked; `ca_file` replaces the system's CAs."""
    return ssl.create_default_context(cafile=ca_file)


async def send(mail: Mail, timeout: float, allow_private: bool,
               redact: Redactor) -> transport.Response:
    """Submit `mail` once. The Response's status is the SMTP reply code (250 on
    success); `refused` marks a permanent (5xx) refusal or a refused destination."""
    try:
        with anyio.fail_after(timeout):
            sock = await connect(mail.host, mail.port, allow_private, timeout)
            client = aiosmtplib.SMTP(hostname=mail.host, sock=sock, timeout=timeout,
                                     use_tls=mail.tls == "implicit",
                                     start_tls=mail.tls == "starttls",
                                     tls_context=tls_context(mail.ca_file))
            try:
                await client.connect()
                if mail.username is not None and mail.password is not None:
                    await client.login(mail.username, mail.password)
                refused, reply = await client.send_message(
                    mail.message, sender=mail.sender, recipients=mail.recipients)
            finally:
                client.close()
                sock.close()
    except DestinationRefused as exc:
        return transport.Response(None, "", redact(f"destination refused: {exc}"), None,
                                  refused=True)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = sorted({e.code for e in exc.recipients})
        return _refusal(min(codes), f"every recipient was refused ({_words(exc.recipients[0])})",
                        redact)
    except aiosmtplib.SMTPResponseException as exc:
        return _refusal(exc.code, f"{SERVER} answered {exc.code}: {_words(exc)}", redact)
    except aiosmtplib.SMTPException as exc:
        # aiosmtplib says so in a plain SMTPException: no class of its own to catch.
        if "STARTTLS extension not supported" in exc.message:
            return transport.Response(None, "", f"{SERVER} does not offer STARTTLS; set "
                                      "tls = \"implicit\" if it speaks TLS from the start",
                                      None, refused=True)
        if type(exc) is aiosmtplib.SMTPException:  # a refusal by what the server offers
            return transport.Response(None, "", redact(f"{SERVER}: {exc.message}"), None,
                                      refused=True)
        return transport.Response(None, "", redact(_failure(exc)), None)
    except TimeoutError:
        return transport.Response(None, "", f"timed out after {timeout:g}s", None)
    except ssl.SSLCertVerificationError as exc:
        return transport.Response(None, "", f"{SERVER} has an invalid TLS certificate: "
                                  f"{exc.verify_message}", None)
    except OSError as exc:
        return transport.Response(None, "", redact(_failure(exc)), None)
    # Some recipients refused, some accepted: delivered, and the refusals are kept.
    note = "; ".join(f"{address}: {response.code}" for address, response in refused.items())
    body = redact.keep(reply + (f" (refused: {note})" if note else ""),
                       constants.RESPONSE_KEEP_BYTES)
    return transport.Response(250, body, None, None)


def _refusal(code: int, text: str, redact: Redactor) -> transport.Response:
    """SMTP 4xx is a temporary failure (retried), 5xx a permanent one (not)."""
    return transport.Response(code, "", redact(text), None, refused=code >= 500)


def _words(exc: aiosmtplib.SMTPResponseException) -> str:
    return " ".join(exc.message.split())[:200]


def _failure(exc: BaseException) -> str:
    """A connection-level failure in words, naming neither the host nor an address."""
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return f"{SERVER} closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake with {SERVER} failed"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {SERVER}: {str(exc.strerror or '').lower()}"
    return transport.describe(exc).replace(transport.ENDPOINT, SERVER)
