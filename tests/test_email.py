"""Email through the real daemon to a real SMTP server in the test (aiosmtpd): STARTTLS
and implicit TLS with a certificate made here, SMTP AUTH, and the refusals."""

from __future__ import annotations

import asyncio
import ssl
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import eventually, execution, free_port, settled

PASSWORD = "smtp-pass-0123456789"
CREATED = {"type": "artifact.created", "entity": "acme", "project": "vision",
           "collection": "resnet", "version": 4, "author": "ana"}


class Inbox:
    """aiosmtpd's handler; it runs on the server's own thread and loop, and hands
    each accepted message to the test's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rcpt_answer: str | None = None) -> None:
        self.loop = loop
        self.rcpt_answer = rcpt_answer
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.loop.call_soon_threadsafe(self.messages.put_nowait,
                                       (envelope, session.ssl is not None))
        return "250 2.0.0 queued as 42"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"ml" and
                          auth_data.password == PASSWORD.encode())


@pytest.fixture
def tls(short_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA made for this test, a certificate for localhost, the CA's file for the daemon."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    ca_file = short_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


@pytest.fixture
def smtp_server():
    controllers: list[Controller] = []

    def start(inbox: Inbox, **kwargs: Any) -> int:
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port,
                                authenticator=inbox.authenticate, **kwargs)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def email_config(port: int, ca_file: Path, tls: str = "starttls") -> str:
    return f"""
[secrets]
SMTP_PASSWORD = {{ env = "RH_SMTP_PASSWORD" }}

[integrations.mail]
kind = "email"
host = "localhost"
port = {port}
tls = "{tls}"
username = "ml"
password = "SMTP_PASSWORD"
from = "runhook <runhook@example.com>"
to = ["ana@example.com", "Bo <bo@example.com>"]
ca_file = "{ca_file}"
allow_private = true

[[automations]]
name = "new-model"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "mail", title = "New version of ${{artifact_collection_name}}", text = "${{artifact_version}} by ${{event_author}}" }}
"""


async def one_execution(daemon: Any) -> dict[str, Any]:
    async with daemon.client() as client:
        [row] = (await client.request({"type": "query.history"}))["executions"]
    return await settled(daemon, row["id"])


def no_password_anywhere(daemon: Any) -> None:
    assert PASSWORD not in daemon.log_text()
    for path in daemon.directory.glob("runhook.db*"):
        assert PASSWORD.encode() not in path.read_bytes()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_mail_over_tls_with_auth(start_daemon, smtp_server, tls, mode):
    server_context, ca_file = tls
    inbox = Inbox(asyncio.get_running_loop())
    if mode == "starttls":
        # auth_require_tls: the server refuses AUTH before STARTTLS, so a login that
        # succeeds proves the upgrade happened first.
        port = smtp_server(inbox, tls_context=server_context, require_starttls=True,
                           auth_require_tls=True)
    else:
        # (aiosmtpd's auth_require_tls knows only STARTTLS: here TLS is from the start.)
        port = smtp_server(inbox, ssl_context=server_context, auth_require_tls=False)
    daemon = await start_daemon(email_config(port, ca_file, mode),
                                env={"RH_SMTP_PASSWORD": PASSWORD})
    async with daemon.client() as client:
        assert await client.send(CREATED) == {"ok": True}
    envelope, _ = await asyncio.wait_for(inbox.messages.get(), 20)
    assert inbox.logins == [(b"ml", PASSWORD.encode())]
    assert envelope.mail_from == "runhook@example.com"
    assert envelope.rcpt_tos == ["ana@example.com", "bo@example.com"]
    mail = message_from_bytes(envelope.original_content, policy=policy.default)
    done = await one_execution(daemon)
    assert mail["Subject"] == "New version of resnet"
    assert mail["From"] == "runhook <runhook@example.com>"
    assert mail["To"] == "ana@example.com, Bo <bo@example.com>"
    assert mail["Message-ID"] == f"<{done['execution']['id']}@runhook>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content().splitlines() == [  # SMTP carries CRLF line ends
        "acme/vision/resnet:v4 by ana", "", "automation new-model · acme/vision · CREATE_ARTIFACT"]
    assert done["execution"]["state"] == "FINISHED"
    [attempt] = done["attempts"]
    assert attempt["status"] == 250 and "queued as 42" in attempt["response"]
    no_password_anywhere(daemon)


async def test_a_server_without_starttls_is_refused(start_daemon, smtp_server, tls):
    _, ca_file = tls
    inbox = Inbox(asyncio.get_running_loop())
    port = smtp_server(inbox, auth_require_tls=False)  # no TLS at all
    daemon = await start_daemon(email_config(port, ca_file), env={"RH_SMTP_PASSWORD": PASSWORD})
    async with daemon.client() as client:
        await client.send(CREATED)
    done = await one_execution(daemon)
    assert done["execution"]["state"] == "FAILED"
    assert done["execution"]["reason"].startswith("the mail server does not offer STARTTLS")
    assert inbox.logins == []  # the password never went out in the clear
    no_password_anywhere(daemon)


async def test_a_permanent_refusal_fails_a_temporary_one_retries(start_daemon, smtp_server,
                                                                 tls):
    server_context, ca_file = tls
    inbox = Inbox(asyncio.get_running_loop(), rcpt_answer="550 5.1.1 no such user")
    port = smtp_server(inbox, tls_context=server_context, require_starttls=True)
    daemon = await start_daemon(email_config(port, ca_file), env={"RH_SMTP_PASSWORD": PASSWORD})
    async with daemon.client() as client:
        await client.send(CREATED)
    done = await one_execution(daemon)
    assert done["execution"]["state"] == "FAILED" and len(done["attempts"]) == 1
    assert done["execution"]["reason"] == "every recipient was refused (5.1.1 no such user)"

    inbox.rcpt_answer = "451 4.3.0 try again later"
    async with daemon.client() as client:
        await client.send({**CREATED, "version": 5})
        rows = (await client.request({"type": "query.history"}))["executions"]
    pending = await eventually(lambda: execution(daemon, rows[0]["id"]),
                               lambda a: len(a["attempts"]) == 1)
    assert pending["execution"]["state"] == "PENDING"  # retried on the schedule
    assert pending["attempts"][0]["error"] == "every recipient was refused (4.3.0 try again later)"
