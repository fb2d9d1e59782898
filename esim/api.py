"""The ES2+ endpoint the SM-DP+ calls back: HandleDownloadProgressInfo (SGP.22 5.3.5)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, request

from mvne.esim.adapters import InvalidNotification, parse_download_progress
from mvne.esim.service import record_download_progress
from mvne.infra.web.problems import ProblemError

log = logging.getLogger("mvne.esim")

es2plus = Blueprint("es2plus", __name__, url_prefix="/gsma/rsp2/es2plus")


@es2plus.post("/handleDownloadProgressInfo")
def handle_download_progress_info() -> Response:
    """Record how a profile's download and installation went; answers 204 as ES2+ requires."""
    rt = current_app.extensions["mvne.runtime"]
    payload: Any = request.get_json(silent=True)
    try:
        progress = parse_download_progress(payload)
    except InvalidNotification as exc:
        raise ProblemError(400, "invalid_notification", str(exc), errors={exc.field: [str(exc)]}) from None
    # Mutual TLS authenticates the SM-DP+ in production; the requester id must still be the one we expect.
    if progress.requester_id != rt.settings.smdp_address:
        raise ProblemError(403, "unknown_requester", f"Unknown SM-DP+ {progress.requester_id!r}.")
    with rt.db.transaction(platform=True) as session:
        sim = record_download_progress(session, progress)
    if sim is None:
        log.warning("download notification for an unknown ICCID", extra={"iccid": progress.iccid})
    return Response(
        status=204, headers={"X-Admin-Protocol": request.headers.get("X-Admin-Protocol", "gsma/rsp/v2.2.0")}
    )
