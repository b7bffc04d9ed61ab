"""The NATS connection a node makes: nats-py that never goes on in clear when TLS is
wanted, the connect options for who the node is, and what a refusal at connect means
in terms of the configuration keys to fix."""

from __future__ import annotations

import ssl
from typing import Any

import nats.errors
from nats.aio.client import Client

from runhook.config.nats_access import Access, tls_context


class NotSecure(nats.errors.Error):
    """A server that would take this node's connection in clear."""


class SecureClient(Client):
    """nats-py, except that a connection meant to be TLS never goes on in clear:
    nats-py upgrades only when the server's INFO asks for TLS, even for a tls://
    URL, so a server (or whoever sits between) that does not ask would be sent the
    credentials and every event in clear. Checked at every connect and reconnect,
    before anything is sent."""

    def __init__(self, tls: bool) -> None:
        super().__init__()
        self._tls_wanted = tls

    async def _process_info(self, info: dict[str, Any],
                            initial_connection: bool = False) -> None:
        if initial_connection and self._tls_wanted and not info.get("tls_required"):
            raise NotSecure("the server does not require TLS, and this node is set to use "
                             "it (a tls:// URL or a cluster.tls_ key): nothing was sent; "
                             "give the servers a tls block")
        await super()._process_info(info, initial_connection)


def credentials(access: Access) -> dict[str, Any]:
    """nats-py's connect() options for who this node is and how it checks the servers."""
    options: dict[str, Any] = {}
    if access.credentials:
        options["user_credentials"] = access.credentials
    if access.nkey_seed_file:
        options["nkeys_seed"] = access.nkey_seed_file
    if access.user:
        options.update(user=access.user, password=access.password)
    if access.token:
        options["token"] = access.token
    context = tls_context(access)
    if context is not None:
        options["tls"] = context
    if access.tls_hostname:
        options["tls_hostname"] = access.tls_hostname
    return options


def refusal(exc: Exception, access: Access) -> str | None:
    """What a refusal at connect means, in terms of the keys to fix; None for what
    may pass (a server starting or away). Never quotes a secret: nats-py's own
    messages name no credential, and only key names and paths are added here."""
    text = str(exc).lower()
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text \
            or "authentication" in text:
        return f"refused this node's credentials ({access.method()}): authorization violation"
    if isinstance(exc, NotSecure):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        if "mismatch" in message:
            return (f"its TLS certificate is not for the host in cluster.nats ({message}); "
                    "give the name it carries as cluster.tls_hostname")
        return (f"its TLS certificate is not trusted ({message}); give the CA that signed "
                "it as cluster.tls_ca")
    if access.tls and not access.tls_cert and isinstance(
            exc, ConnectionResetError | BrokenPipeError | ssl.SSLError
            | nats.errors.UnexpectedEOF):
        return ("closed the TLS connection after the handshake (a server whose tls block "
                "says `verify: true` requires a client certificate): give this node's as "
                "cluster.tls_cert and cluster.tls_key")
    return None
