"""Email: a plain-text message for SMTP submission; subject = the action's title (pure).

Following RFC 5322 and RFC 3834: one Subject line (line breaks in a rendered title
become spaces, or a run name could add headers), a Message-ID made from the
execution id (stable across retries, as `webhook-id` is, so a duplicate delivery is
recognisable), and `Auto-Submitted: auto-generated`, so auto-responders stay quiet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, NamedTuple

from runhook.config.model import EmailIntegration
from runhook.core.templates import Text
from runhook.delivery.channels.common import context_line, cut, render

# RFC 5322 caps a line at 998 characters; a subject far shorter reads better anyway.
SUBJECT_LIMIT = 250
_BREAKS = re.compile(r"[\r\n\t\v\f\x00]+")
TLS_PORTS = {"starttls": 587, "implicit": 465}


class Mail(NamedTuple):
    """One message to submit, with where and how; the password exists only here."""

    host: str
    port: int
    tls: str  # "starttls" or "implicit"
    username: str | None
    password: str | None
    sender: str  # the envelope sender: the bare address of `from`
    recipients: list[str]
    message: EmailMessage
    ca_file: str | None


def message(sender: str, to: list[str], title: str, text: str,
            context: Mapping[str, Any]) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = cut(_BREAKS.sub(" ", title).strip(), SUBJECT_LIMIT)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    execution_id = context.get("execution_id", "")
    if execution_id:
        mail["Message-ID"] = f"<{execution_id}@runhook>"
        mail["X-Runhook-Execution"] = str(execution_id)
    mail["Auto-Submitted"] = "auto-generated"
    body = "\n\n".join(part for part in (text, context_line(context, "")) if part)
    mail.set_content(body + "\n")
    return mail


def build(integration: EmailIntegration, title: Text | None, text: Text | None,
          context: Mapping[str, Any], secrets: Mapping[str, str]) -> Mail:
    rendered = render(title, text, context)
    password = secrets[integration.password] if integration.password is not None else None
    return Mail(integration.host, integration.port or TLS_PORTS[integration.tls],
                integration.tls, integration.username, password,
                parseaddr(integration.sender)[1], [parseaddr(a)[1] for a in integration.to],
                message(integration.sender, integration.to, *rendered, context),
                integration.ca_file)
