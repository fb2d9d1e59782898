"""The app under gunicorn in a process of its own, with the production configuration, until the block ends.

For what must see the server a deployment runs (the benchmarks, the tests of gunicorn's own refusals).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx


class GunicornDidNotStart(RuntimeError):
    """gunicorn stopped, or did not answer `/healthz` in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def gunicorn_server(
    env: Mapping[str, str],
    log_path: Path,
    *,
    workers: int = 1,
    threads: int = 2,
    request_timeout_s: int = 30,
    start_timeout_s: float = 60,
) -> Iterator[str]:
    """gunicorn serving `mvne.platform.wsgi:app` on a free loopback port, its output in `log_path`: the base URL
    once `/healthz` answers 200. Stopped (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    with log_path.open("wb") as log_file:
        child = subprocess.Popen(  # noqa: S603 (our own server, our own arguments)
            [
                str(bin_dir / "gunicorn"),
                "-c",
                "python:mvne.platform.gunicorn_conf",
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                str(request_timeout_s),
                "--no-control-socket",
                "-b",
                f"127.0.0.1:{port}",
                "mvne.platform.wsgi:app",
            ],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if child.poll() is not None:
                    raise GunicornDidNotStart(f"gunicorn stopped: {log_path.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise GunicornDidNotStart(
                        f"gunicorn did not answer in {start_timeout_s:g} s: "
                        f"{log_path.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.3)
            yield base
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
