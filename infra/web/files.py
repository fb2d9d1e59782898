"""Download URLs for stored objects: presigned on S3, signed links served here for the filesystem."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, abort, current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from mvne.infra.storage import ObjectNotFound
from mvne.infra.web.context import runtime

blueprint = Blueprint("files", __name__)
_SALT = "mvne.files"


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def file_url(key: str, expires_in: int = 7 * 24 * 3600) -> str:
    """A URL a browser can fetch the object from, valid for `expires_in` seconds."""
    rt = runtime()
    direct = rt.storage.url(key, expires_in=expires_in)
    if direct:
        return direct
    token = _signer().dumps(key)
    return f"{rt.settings.public_url}/files/{key}?sig={token}"


@blueprint.get("/files/<path:key>")
def download(key: str) -> Response:
    """Serve a stored object to whoever holds its signed link."""
    try:
        signed_key = _signer().loads(request.args.get("sig", ""), max_age=7 * 24 * 3600)
    except (BadSignature, SignatureExpired):
        abort(404)
    if signed_key != key:
        abort(404)
    try:
        data = runtime().storage.get(key)
    except ObjectNotFound:
        abort(404)
    mimetype = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, mimetype=mimetype, headers={"Cache-Control": "private, max-age=3600"})
