"""Errors the HTTP servers answer themselves, before the app sees the request, as problems too.

gunicorn and waitress refuse a request line or headers that are too large, or a request they cannot
parse, with their own HTML or plain-text page. Clients of the API read `application/problem+json`
everywhere, so both servers are made to answer with a problem and a stable `code` instead:

- gunicorn: `ProblemThreadWorker` (a gthread worker), configured by `mvne.platform.gunicorn_conf`;
- waitress (embedded mode): `use_problem_errors(server)` on the server `create_server` returned.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import ThreadWorker
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from mvne.infra.web.problems import PROBLEM_JSON, PROBLEM_TYPE

# status -> (code, detail). Details never echo the request: it may be large, or hostile.
SERVER_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("malformed_request", "The request line or headers are not valid HTTP."),
    403: ("forbidden", "The request is forbidden."),
    413: ("payload_too_large", "The request body is larger than the server accepts."),
    414: ("uri_too_long", "The request line (method, path and query) is longer than the server accepts."),
    417: ("expectation_failed", "The Expect header cannot be met."),
    431: (
        "header_fields_too_large",
        "The request headers are too large: too many, or one longer than the server accepts.",
    ),
    501: ("not_implemented", "The request uses a transfer coding the server does not implement."),
}


def problem_body(status: int, title: str) -> bytes:
    """The problem+json body for an error the server answers itself."""
    code, detail = SERVER_PROBLEMS.get(status, ("internal_error" if status >= 500 else "bad_request", title))
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status, "code": code, "detail": detail}
    return json.dumps(body).encode("utf-8")


class _CapturedSocket:
    """Stands in for the client socket while gunicorn writes its error page, keeping the page."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0  # so gunicorn writes straight to sendall, without toggling blocking mode

    def sendall(self, data: bytes) -> None:
        self.written += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ProblemThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering the errors it raises itself with a problem+json body.

    gunicorn decides the status (414 for a request line too long, 431 for headers too large, 400 for
    what does not parse) and logs the request; only the HTML page it would send is replaced.
    """

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        captured = _CapturedSocket(client)
        super().handle_error(req, captured, addr, exc)
        status_line = captured.written.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            _, status_text, title = status_line.split(" ", 2)
            status = int(status_text)
        except ValueError:
            status, title = 500, "Internal Server Error"
        body = problem_body(status, title)
        head = (
            f"HTTP/1.1 {status} {title}\r\n"
            "Connection: close\r\n"
            f"Content-Type: {PROBLEM_JSON}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            gunicorn_util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client went away; gunicorn does the same
            self.log.debug("Failed to send error message.")


class ProblemErrorTask(ErrorTask):
    """waitress's error response (400, 413, 431...) with a problem+json body."""

    def execute(self) -> None:
        error = self.request.error
        body = problem_body(int(error.code), str(error.reason))
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", PROBLEM_JSON))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class ProblemChannel(HTTPChannel):
    error_task_class = ProblemErrorTask


def use_problem_errors(server: Any) -> Any:
    """Make a waitress server (from `create_server`) answer its own errors as problems; returns it."""
    listeners = [server] if hasattr(server, "channel_class") else list(getattr(server, "map", {}).values())
    for listener in listeners:
        if hasattr(listener, "channel_class"):
            listener.channel_class = ProblemChannel
    return server
