"""Outgoing e-mail: verification links, invitations, one-time codes.

A message is asked for inside the caller's transaction (`send_mail` writes an outbox row), so it is sent
once the change it speaks of is committed, and retried until the mail server takes it. Where it goes is
`Settings.mail_url`:

- `smtp://user:password@host:587` (STARTTLS when the server offers it), `smtps://…:465` (TLS from the
  start), `smtp+plain://host:25` (no TLS; a local relay): a real mail server, as in production;
- `mailbox`: the local mailbox of embedded mode, a table that `mvne mailbox` and `GET /v1/dev/mailbox`
  read, so a founder trying the platform on a laptop can follow the links sent to them.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mvne.infra.db import Base, Database, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import QUEUE_DEFAULT, enqueue, job
from mvne.infra.runtime import current_runtime

MAILBOX = "mailbox"
SMTP_TIMEOUT_S = 20


@dataclass(frozen=True)
class Mail:
    """One message. `kind` names what it is for (`signup_verification`, `staff_invitation`, …)."""

    to: str
    subject: str
    text: str
    kind: str
    html: str | None = None
    # The display name shown as the sender ("Nimbus Mobile"); the address is the platform's.
    sender_name: str | None = None


class MailboxMessage(Base):
    """A message kept by the local mailbox (embedded mode) instead of being sent."""

    __tablename__ = "mailbox_messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    to_address: Mapped[str] = mapped_column(String(254), index=True)
    sender: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Mailer(Protocol):
    def deliver(self, mail: Mail, sender: str) -> None: ...


class SmtpMailer:
    """Hands messages to an SMTP server."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+plain") or not parts.hostname:
            raise ValueError("a mail URL is smtp://, smtps:// or smtp+plain:// with a host")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or {"smtp": 587, "smtps": 465, "smtp+plain": 25}[parts.scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def deliver(self, mail: Mail, sender: str) -> None:
        message = build_message(mail, sender)
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_S)
        with client:
            client.ehlo()
            if self.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)


class LocalMailbox:
    """Keeps messages in the database for `mvne mailbox` and `GET /v1/dev/mailbox` (embedded mode)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def deliver(self, mail: Mail, sender: str) -> None:
        with self.db.transaction(platform=True) as session:
            session.add(
                MailboxMessage(
                    id=new_id("msg"),
                    to_address=mail.to.lower(),
                    sender=sender,
                    subject=mail.subject,
                    kind=mail.kind,
                    text=mail.text,
                    html=mail.html,
                )
            )


def build_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].rstrip(">") or None)
    message["X-Mvne-Kind"] = mail.kind
    message.set_content(mail.text)
    if mail.html:
        message.add_alternative(mail.html, subtype="html")
    return message


def sender_of(mail: Mail, from_address: str) -> str:
    """`"Nimbus Mobile" <no-reply@platform>`: the brand's name before the platform's address."""
    return formataddr((mail.sender_name, from_address)) if mail.sender_name else from_address


def build_mailer(mail_url: str, db: Database) -> Mailer:
    if mail_url == MAILBOX:
        return LocalMailbox(db)
    return SmtpMailer(mail_url)


def check_mail_url(mail_url: str) -> None:
    """Raise ValueError when the URL names no mailer we know."""
    if mail_url != MAILBOX:
        SmtpMailer(mail_url)


def send_mail(session: Session, mail: Mail, *, tenant_id: str | None = None) -> None:
    """Ask for `mail` to be sent once the session's transaction commits."""
    enqueue(session, "mail.deliver", tenant_id=tenant_id, mail=asdict(mail))


@job("mail.deliver", queue=QUEUE_DEFAULT, max_retries=10)
def deliver(mail: dict[str, str | None], tenant_id: str | None = None) -> None:
    """Hand one message to the mailer; raise (to be retried) when the server does not take it."""
    rt = current_runtime()
    message = Mail(**mail)  # type: ignore[arg-type]
    build_mailer(rt.settings.mail_url, rt.db).deliver(message, sender_of(message, rt.settings.mail_from))


def mailbox_messages(session: Session, *, to: str | None = None, limit: int = 20) -> list[MailboxMessage]:
    """The local mailbox, newest first; only `to`'s messages when given."""
    query = select(MailboxMessage).order_by(MailboxMessage.created_at.desc(), MailboxMessage.id.desc()).limit(limit)
    if to:
        query = query.where(MailboxMessage.to_address == to.lower())
    return list(session.scalars(query))
