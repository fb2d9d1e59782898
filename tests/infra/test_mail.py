"""Outgoing mail: sent once its transaction commits, to a real SMTP server or to embedded mode's mailbox."""

from __future__ import annotations

from flask import Flask

from mvne.infra.mail import Mail, SmtpMailer, send_mail
from mvne.infra.runtime import Runtime
from tests.conftest import free_port
from tests.support.api import wait_for
from tests.support.smtp import SmtpSink, smtp_sink


def test_a_message_asked_for_in_a_committed_transaction_reaches_the_local_mailbox(
    app: Flask, runtime: Runtime, live_url: str
) -> None:
    address = "founder-mailbox@example.org"
    with runtime.db.transaction(platform=True) as session:
        send_mail(session, Mail(to=address, subject="Confirm", text="Your code: 424242", kind="test_message"))
    runtime.poke_relay()
    client = app.test_client()

    def delivered() -> list[dict[str, str]] | None:
        data = client.get("/v1/dev/mailbox", query_string={"to": address}).get_json()["data"]
        return data or None

    messages = wait_for(delivered, what="the message in the mailbox")
    seen = [(m["subject"], m["kind"], m["text"]) for m in messages]
    assert seen == [("Confirm", "test_message", "Your code: 424242")]
    assert client.get("/v1/dev/mailbox", query_string={"to": "someone-else@example.org"}).get_json()["data"] == []


def test_a_message_asked_for_in_a_rolled_back_transaction_is_never_sent(
    app: Flask, runtime: Runtime, live_url: str
) -> None:
    address = "rolled-back@example.org"
    session = runtime.db.session(platform=True)
    try:
        send_mail(session, Mail(to=address, subject="Never", text="-", kind="test_message"))
        session.rollback()
    finally:
        session.close()
    with runtime.db.transaction(platform=True) as session:
        send_mail(session, Mail(to="marker@example.org", subject="After", text="-", kind="test_message"))
    runtime.poke_relay()
    client = app.test_client()
    wait_for(lambda: client.get("/v1/dev/mailbox?to=marker@example.org").get_json()["data"] or None, what="marker")

    assert client.get("/v1/dev/mailbox", query_string={"to": address}).get_json()["data"] == []


def test_the_smtp_mailer_hands_a_multipart_message_to_a_real_smtp_server() -> None:
    with smtp_sink(free_port()) as sink:
        mail = Mail(
            to="ada@example.org",
            subject="Bienvenue chez Nimbus",
            text="Votre code : 123456",
            html="<p>Votre code : <b>123456</b></p>",
            kind="one_time_code",
            sender_name="Nimbus Mobile",
        )
        SmtpMailer(sink.url).deliver(mail, '"Nimbus Mobile" <no-reply@mvne.example>')
        received = sink.wait_for("ada@example.org", kind="one_time_code", timeout=5)

    assert received["Subject"] == "Bienvenue chez Nimbus"
    assert (received["From"].addresses[0].display_name, received["From"].addresses[0].addr_spec) == (
        "Nimbus Mobile",
        "no-reply@mvne.example",
    )
    assert SmtpSink.text_of(received).strip() == "Votre code : 123456"
    html = received.get_body(preferencelist=("html",))
    assert html is not None
    assert "<b>123456</b>" in str(html.get_content())
