"""A real SMTP server for tests (aiosmtpd): the platform delivers to it as to any mail server."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SmtpSink:
    """What the server received, in arrival order."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp+plain://{self.host}:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def wait_for(self, to: str, *, kind: str | None = None, timeout: float = 20) -> EmailMessage:
        """The newest message to `to` (of `kind`), waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for message in reversed(self.messages):
                    if message["To"] == to and (kind is None or message["X-Mvne-Kind"] == kind):
                        return message
            time.sleep(0.1)
        raise AssertionError(f"no message to {to} ({kind or 'any kind'}) within {timeout} s")

    @staticmethod
    def text_of(message: EmailMessage) -> str:
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


@contextmanager
def smtp_sink(port: int) -> Iterator[SmtpSink]:
    sink = SmtpSink(port=port)
    controller = Controller(sink, hostname=sink.host, port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
