"""The ES2+ endpoint the SM-DP+ calls back: HandleDownloadProgressInfo (SGP.22 5.3.5).

Only an authenticated SM-DP+ may notify (mutual TLS, see `mvne.esim.tls`). An accepted notification
gets ES2+'s answer to a notification, 204 with no body; a refused one gets an ES2+ response header
with status `Failed` and the SGP.22 subject and reason codes, under a 4xx status.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from mvne.esim.adapters import ADMIN_PROTOCOL, InvalidNotification, parse_download_progress
from mvne.esim.errors import NotificationRefused
from mvne.esim.service import record_download_progress
from mvne.esim.tls import NotifierAuth, NotifierRefused
from mvne.infra.web.guard import refusals_answered_by
from mvne.infra.web.problems import ProblemError

log = logging.getLogger("mvne.esim")

es2plus = Blueprint("es2plus", __name__, url_prefix="/gsma/rsp2/es2plus")
AUTH_KEY = "mvne.es2plus_auth"
# HTTP statuses of refusals by status code (SGP.22 allows 4xx; the ES2+ header says why).
_HTTP_STATUS = {("8.2.1", "3.9"): 404}


def _load_auth(state: BlueprintSetupState) -> None:
    # At app creation, so that an unreadable CA stops the start, not the first notification.
    rt = state.app.extensions["mvne.runtime"]
    state.app.extensions[AUTH_KEY] = NotifierAuth.from_settings(rt.settings)


es2plus.record_once(_load_auth)


def _protocol() -> str:
    sent = request.headers.get("X-Admin-Protocol", "")
    return sent if sent.startswith("gsma/rsp/v2.") else ADMIN_PROTOCOL


def _failed(status: int, subject_code: str, reason_code: str, message: str) -> Response:
    payload: dict[str, Any] = {
        "header": {
            "functionExecutionStatus": {
                "status": "Failed",
                "statusCodeData": {"subjectCode": subject_code, "reasonCode": reason_code, "message": message},
            }
        }
    }
    # ES2+ forbids escaping characters that need no escaping (SGP.22 6.5), so no ASCII escaping.
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json", headers={"X-Admin-Protocol": _protocol()})


def _refused_request(refusal: ProblemError) -> Response:
    """A request the web kit refused before parsing it (too large, too deep, not JSON): an ES2+ failure too."""
    status = refusal.code if isinstance(refusal.code, int) and 400 <= refusal.code < 500 else 400
    return _failed(status, "1.3.1", "2.1", refusal.detail)


@es2plus.post("/handleDownloadProgressInfo")
@refusals_answered_by(_refused_request)
def handle_download_progress_info() -> Response:
    """Record how a profile's download and installation went; 204 as ES2+ requires, or an ES2+ failure."""
    rt = current_app.extensions["mvne.runtime"]
    auth: NotifierAuth | None = current_app.extensions.get(AUTH_KEY)
    notifier = None
    if auth is not None:
        try:
            notifier = auth.authenticate(request.environ)
        except NotifierRefused as exc:
            log.warning(
                "ES2+ notification refused: %s",
                exc.message,
                extra={"remote_addr": request.remote_addr, "reason_code": exc.reason_code},
            )
            return _failed(403, exc.subject_code, exc.reason_code, exc.message)
    payload: Any = request.get_json(force=True, silent=True)
    try:
        progress = parse_download_progress(payload)
    except InvalidNotification as exc:
        if exc.field == "body":
            return _failed(400, "1.3.1", "2.1", str(exc))
        return _failed(400, "1.6", "2.2" if exc.problem == "is missing" else "2.1", str(exc))
    if progress.requester_id != rt.settings.smdp_address:
        return _failed(403, "1.1", "1.1", f"unknown function requester {progress.requester_id!r}")
    try:
        with rt.db.transaction(platform=True) as session:
            record_download_progress(session, progress)
    except NotificationRefused as exc:
        log.warning(
            "ES2+ notification not applied: %s",
            exc.message,
            extra={"iccid": progress.iccid, "code": f"{exc.subject_code}/{exc.reason_code}"},
        )
        status = _HTTP_STATUS.get((exc.subject_code, exc.reason_code), 409)
        return _failed(status, exc.subject_code, exc.reason_code, exc.message)
    log.info(
        "ES2+ notification applied",
        extra={
            "iccid": progress.iccid,
            "point": progress.point_name,
            "status": progress.status,
            "notifier": notifier.subject if notifier else None,
        },
    )
    return Response(status=204, headers={"X-Admin-Protocol": _protocol()})
