"""The application factory: one Flask app serving the API, OAuth2, health and metrics.

In embedded mode the simulators are mounted on the same port (`/sim/smdp`, `/sim/network`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mvne.infra.ids import new_id
from mvne.infra.logging import bind_context, clear_context, configure_logging
from mvne.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings, load_settings
from mvne.infra.web import idempotency
from mvne.infra.web.problems import ProblemApi, problem, register_error_handlers
from mvne.platform.auth import init_auth
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
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        API_TITLE="MVNE platform API",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/v1/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Launch and run a mobile operator: tenants, offers, customers, "
                "eSIM subscriptions, usage, billing runs and invoices."
            },
            "components": {
                "securitySchemes": {
                    "oauth2": {
                        "type": "oauth2",
                        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
                    },
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                }
            },
            "security": [{"bearer": []}],
        },
    )
    app.extensions["mvne.runtime"] = rt
    register_error_handlers(app)
    api = ProblemApi(app)
    register_error_handlers(app)  # again: flask-smorest registered its own HTTPException handler
    init_auth(app, issuer=settings.public_url, private_pem=settings.jwt_private_key, ttl=settings.token_ttl)
    _register_request_hooks(app)
    _register_health(app, rt)
    _register_docs_assets(app)

    from mvne.esim.api import es2plus
    from mvne.infra.web.files import blueprint as files_blueprint
    from mvne.platform.routes import register_api

    app.register_blueprint(files_blueprint)
    app.register_blueprint(es2plus)
    register_api(api)

    if settings.embedded_simulators:
        _mount_simulators(app, rt)
    return app


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
        """Prometheus metrics."""
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def _register_docs_assets(app: Flask) -> None:
    import swagger_ui_bundle

    folder = Path(swagger_ui_bundle.swagger_ui_path)

    @app.get("/v1/docs/assets/<path:name>")
    def docs_assets(name: str) -> Response:
        """Swagger UI served from the installed package, so the docs page works offline."""
        return send_from_directory(folder, name, max_age=86400)


def _mount_simulators(app: Flask, rt: Runtime) -> None:
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
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]
