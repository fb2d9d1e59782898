"""Embedded mode: the web app, a worker, the outbox relay, the scheduler and the simulators in one process."""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any

import click
from waitress import wasyncore
from waitress.server import create_server

from mvne.infra.logging import configure_logging
from mvne.infra.migrate import upgrade
from mvne.infra.settings import Settings
from mvne.platform.app import create_app
from mvne.platform.server_errors import use_problem_errors
from mvne.platform.wiring import build_runtime


class EmbeddedServer:
    """Everything of the platform on one port, started and stopped as one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = build_runtime(settings)
        self.app = create_app(rt=self.runtime)
        self._server: Any = use_problem_errors(
            create_server(self.app, host=settings.host, port=settings.port, threads=8, channel_timeout=60)
        )
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    def __enter__(self) -> EmbeddedServer:
        self._thread.start()
        self.runtime.start_worker()
        self.runtime.start_relay()
        self.runtime.start_scheduler()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Jobs first, while the simulators they call (served here) still answer; then the web.
        self.runtime.stop_background()
        self._stop_web()
        self.runtime.stop()

    def _stop_web(self) -> None:
        """Finish the requests in flight (up to 5 s), then close every socket, idle keep-alive ones included.

        Closing only the listening socket leaves the loop serving the open connections until their
        `channel_timeout`; the sockets are closed by the loop's own thread, through its trigger.
        """
        server = self._server
        server.task_dispatcher.shutdown(timeout=5)
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._thread.join(timeout=5)


def run_embedded(settings: Settings, *, seed: bool = True) -> None:
    """`mvne run`: migrate, start everything, seed the demo tenant, serve until Ctrl-C."""
    from mvne.platform.demo import seed_demo

    configure_logging(settings.log_level, settings.log_format)
    upgrade(settings)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedServer(settings) as server:
        base = settings.public_url
        click.echo(
            f"\nMVNE platform (embedded mode) on {base}\n"
            f"  API docs      {base}/v1/docs\n"
            f"  OpenAPI       {base}/v1/openapi.json\n"
            f"  Token         POST {base}/oauth/token (client credentials)\n"
            f"  Health        {base}/healthz  {base}/readyz  {base}/metrics\n"
            f"  Simulators    {base}/sim/smdp  {base}/sim/network\n"
        )
        if seed:

            def _seed() -> None:
                try:
                    summary = seed_demo(server.runtime)
                except Exception as exc:  # the platform stays up; the demo can be seeded again
                    click.echo(f"demo seed did not finish: {exc}", err=True)
                    return
                click.echo(
                    "Demo tenant ready:\n"
                    f"  tenant        {summary['tenant_id']} (slug demo)\n"
                    f"  tenant client {summary['tenant_client']['client_id']} / "
                    f"{summary['tenant_client']['client_secret']}\n"
                    f"  operator      {summary['operator_client']['client_id']} / "
                    f"{summary['operator_client']['client_secret']}\n"
                    f"  console owner {summary['owner']['email']} / {summary['owner']['password']} (tenant demo)\n"
                    f"  active lines  {summary['active_lines']}, invoice for {summary['period']} issued\n"
                    "Press Ctrl-C to stop."
                )

            threading.Thread(target=_seed, name="demo-seed", daemon=True).start()
        stop.wait()
        click.echo("stopping...")
    click.echo("stopped")
