"""The application factory: one Flask app serving the API, OAuth2, health and metrics.

In embedded mode the simulators are mounted on the same port (`/sim/smdp`, `/sim/network`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from sqlalchemy.exc import IntegrityError
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mvne.charging.online.api import BASE_PATH as NCHF_BASE_PATH
from mvne.charging.online.front import NchfFront
from mvne.infra.fields import SchemaExtrasPlugin
from mvne.infra.ids import new_id
from mvne.infra.logging import bind_context, clear_context, configure_logging
from mvne.infra.mail import MAILBOX, mailbox_messages
from mvne.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings, load_settings
from mvne.infra.web import idempotency
from mvne.infra.web.auth import AUTH_EXTENSION
from mvne.infra.web.guard import register_guard
from mvne.infra.web.limits import exempt, init_rate_limits
from mvne.infra.web.problems import ProblemApi, problem, register_error_handlers
from mvne.platform import openapi
from mvne.platform.auth import init_auth
from mvne.platform.console_auth import init_console_sessions
from mvne.platform.wiring import build_runtime

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, rt: Runtime | None = None) -> Flask:
    """Build the app around a runtime (built from the environment's settings when not given)."""
    if rt is None:
        rt = build_runtime(settings or load_settings())
    settings = rt.settings
    configure_logging(settings.log_level, settings.log_format)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="MVNE platform API",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS=openapi.spec_options(),
    )
    app.extensions["mvne.runtime"] = rt
    register_error_handlers(app)
    api = ProblemApi(app, spec_kwargs={"extra_plugins": [SchemaExtrasPlugin(), openapi.OperationDocs(app)]})
    register_error_handlers(app)  # again: flask-smorest registered its own HTTPException handler
    init_auth(app, issuer=settings.public_url, private_pem=settings.jwt_private_key, ttl=settings.token_ttl)
    init_console_sessions(app)
    _register_request_hooks(app)
    init_rate_limits(
        app,
        storage_url=settings.rate_limit_storage_url,
        default=settings.rate_limit_default,
        token=settings.rate_limit_token,
        token_endpoints=("issue_token", "revoke_token"),
        key_prefix=settings.broker_namespace,
        trusted_proxies=settings.rate_limit_trusted_proxies,
    )
    register_guard(app, max_body_bytes=settings.max_body_bytes, max_json_depth=settings.max_json_depth)
    _register_health(app, rt)
    openapi.register_docs_page(app)
    openapi.document_auth(api, app)

    from mvne.esim.api import es2plus
    from mvne.infra.web.files import blueprint as files_blueprint
    from mvne.platform.console_pages import console_pages
    from mvne.platform.routes import register_api

    app.register_blueprint(files_blueprint)
    app.register_blueprint(console_pages)
    app.register_blueprint(es2plus)
    # Not limited: probes and scrapes, the documentation, and the SM-DP+'s notifications (mutual TLS). Said before
    # the API is registered: its document tells which operations are limited. (The host network's charging
    # requests are served beside the app, unlimited: a core refused for a rate would stop its subscribers.)
    exempt(
        app,
        "healthz",
        "readyz",
        "metrics",
        "docs_page",
        "docs_asset",
        blueprints=("api-docs", es2plus.name),
    )
    register_api(api)
    openapi.document_nchf(api, app)

    if settings.mail_url == MAILBOX:
        _register_mailbox(app, rt)
        exempt(app, "dev_mailbox")
    mounts: dict[str, Any] = {
        NCHF_BASE_PATH: NchfFront(
            rt,
            app.extensions[AUTH_EXTENSION],
            max_body_bytes=settings.max_body_bytes,
            max_json_depth=settings.max_json_depth,
        )
    }
    if settings.embedded_simulators:
        mounts.update(_simulators(rt))
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
    return app


def _register_mailbox(app: Flask, rt: Runtime) -> None:
    @app.get("/v1/dev/mailbox")
    def dev_mailbox() -> Response:
        """Embedded mode only: the messages the platform would have e-mailed, newest first (`?to=` one address)."""
        to = request.args.get("to", "", type=str)[:254] or None
        with rt.db.transaction(platform=True) as session:
            messages = mailbox_messages(session, to=to, limit=50)
            data = [
                {
                    "id": m.id,
                    "to": m.to_address,
                    "from": m.sender,
                    "subject": m.subject,
                    "kind": m.kind,
                    "text": m.text,
                    "created_at": m.created_at.isoformat(),
                }
                for m in messages
            ]
        return jsonify(data=data)


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        clear_context()
        g.request_id = request.headers.get("X-Request-Id") or new_id("req")
        g.started = time.perf_counter()
        bind_context(request_id=g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        session = g.pop("db_session", None)
        if session is not None:
            try:
                if response.status_code < 400:
                    idempotency.remember(session, response)
                    session.commit()
                    if session.info.get("outbox_written"):
                        app.extensions["mvne.runtime"].poke_relay()
                else:
                    session.rollback()
            except IntegrityError:
                session.rollback()
                response = problem(
                    409, "conflict", "Conflict", "A concurrent request changed the same data; retry the request."
                )
            finally:
                session.close()
        response.headers["X-Request-Id"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, request.method).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    @app.teardown_request
    def cleanup(exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.rollback()
            session.close()
        clear_context()


def _register_health(app: Flask, rt: Runtime) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: the database, the broker and the storage answer."""
        checks = rt.readiness()
        ready = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics, in the text format every Prometheus scrapes (0.0.4)."""
        return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def _simulators(rt: Runtime) -> dict[str, Any]:
    """The simulators' WSGI apps by base path (embedded mode)."""
    from mvne.esim.simulator import create_smdp_simulator
    from mvne.provisioning.simulator import create_network_simulator

    sim_dir = rt.settings.var_dir / "simulators"
    sim_dir.mkdir(parents=True, exist_ok=True)
    mounts: dict[str, Any] = {
        "/sim/smdp": create_smdp_simulator(
            smdp_address=rt.settings.smdp_address,
            state_path=sim_dir / "smdp.json",
            notification_url=f"{rt.settings.public_url}/gsma/rsp2/es2plus/handleDownloadProgressInfo",
        ),
        "/sim/network": create_network_simulator(storage=rt.storage, state_path=sim_dir / "network.json"),
    }
    return mounts
