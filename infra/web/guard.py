"""Bounds every request meets before a view parses it.

- a body larger than `max_body_bytes` is a 413 problem `payload_too_large`, read or not;
- a JSON body nested deeper than `max_json_depth` is a 422 problem `json_too_deep`, found by a scan of
  its bytes before any parser recurses into it;
- a JSON body that does not parse is a 400 problem `malformed_body`, whatever the parser's complaint;
- an `Idempotency-Key` header that is empty or longer than 255 characters is a 400 problem (an empty
  one would otherwise be taken for no key at all);
- a NUL or an unpaired surrogate in any string (JSON body, query string, path) is a 422 problem naming
  the field: PostgreSQL refuses NUL in text and no surrogate half can be encoded as UTF-8. In a form
  body (the OAuth 2 token request) it is refused as RFC 6749 says: 400 `invalid_request`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Flask, Response, request

from mvne.infra.fields import forbidden_character
from mvne.infra.web.idempotency import HEADER as IDEMPOTENCY_HEADER
from mvne.infra.web.problems import ProblemError

_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


# A JSON string, escapes included: `json_nesting_exceeds` drops them before it counts brackets.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
# Where a parsed JSON string can hold a NUL or an unpaired surrogate: an escape of one (\u0000, \uD800 to
# \uDFFF); a surrogate written raw in UTF-8 (json.loads decodes bytes with "surrogatepass"); any NUL byte,
# which is also how UTF-16 and UTF-32 bodies (read by json.loads too) look.
_MAYBE_FORBIDDEN = re.compile(rb"\x00|\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def json_nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text `data` nests arrays and objects deeper than `limit` (brackets in strings ignored).

    Strings dropped and everything but brackets deleted, each pass removes the innermost pairs: a document
    emptied in `limit` passes is no deeper. What is not (too deep, or brackets that do not pair) is scanned
    byte by byte.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not brackets:
            return False
        if not removed:
            break
    return _scan_nesting(data, limit)


def _scan_nesting(data: bytes, limit: int) -> bool:
    depth = 0
    in_string = False
    pos = 0
    search = _STRUCTURAL.search
    while (found := search(data, pos)) is not None:
        char = data[found.start()]
        pos = found.end()
        if in_string:
            if char == _BACKSLASH:
                pos += 1  # the escaped character, whatever it is
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif char in _CLOSE:
            depth -= 1
    return False


def may_hold_forbidden_strings(data: bytes) -> bool:
    """False when no string parsed from the JSON body `data` can hold a NUL or an unpaired surrogate (one search
    of its bytes, where walking the parsed document costs a check per string)."""
    return _MAYBE_FORBIDDEN.search(data) is not None


def _name(text: str) -> str:
    """A field name fit to echo back: forbidden characters shown as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _forbidden_strings(value: Any) -> Iterator[tuple[list[str], str]]:
    """(path, reason) for every string of a parsed JSON document, key or value, that no field may hold."""
    stack: list[tuple[list[str], Any]] = [([], value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            reason = forbidden_character(node)
            if reason:
                yield path, reason
        elif isinstance(node, dict):
            for key, item in node.items():
                reason = forbidden_character(key)
                if reason:
                    yield [*path, _name(key)], "Field names " + reason[0].lower() + reason[1:]
                else:
                    stack.append(([*path, key], item))
        elif isinstance(node, list):
            stack.extend(([*path, str(index)], item) for index, item in enumerate(node))


def _nest(found: list[tuple[list[str], str]]) -> dict[str, Any]:
    """Errors shaped like marshmallow's: {"records": {"0": {"record_id": ["..."]}}}."""
    errors: dict[str, Any] = {}
    for path, reason in found:
        if not path:
            errors.setdefault("_body", []).append(reason)
            continue
        node = errors
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.setdefault(path[-1], []).append(reason)
    return errors


def _refuse(errors: dict[str, Any]) -> ProblemError:
    return ProblemError(422, "validation_failed", "The request has invalid fields; see errors.", errors=errors)


def _check_path_and_query() -> None:
    errors: dict[str, Any] = {}
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and (reason := forbidden_character(value)):
            errors[_name(name)] = [reason]
    if not errors and (reason := forbidden_character(request.path)):
        errors["_path"] = [reason]
    for key, value in request.args.items(multi=True):
        reason = forbidden_character(key) or forbidden_character(value)
        if reason:
            errors.setdefault(_name(key), []).append(reason)
    if errors:
        raise _refuse(errors)


def _check_headers() -> None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= 255:
        raise ProblemError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters.")


def _check_body(max_body_bytes: int, max_json_depth: int) -> None:
    too_large = ProblemError(
        413, "payload_too_large", f"The request body is larger than the limit of {max_body_bytes} bytes."
    )
    length = request.content_length
    if length is not None and length > max_body_bytes:
        raise too_large
    if request.is_json:
        data = request.get_data(cache=True)
        if length is None and len(data) >= max_body_bytes:
            # A streamed body (no Content-Length) is read up to MAX_CONTENT_LENGTH and silently cut there.
            raise too_large
        if not data.strip():
            return
        parse_json_body(data, max_json_depth=max_json_depth)


def parse_json_body(data: bytes, *, max_json_depth: int) -> Any:
    """The JSON body `data` parsed, once it passed the checks above (too deep, not JSON, a forbidden string)."""
    if json_nesting_exceeds(data, max_json_depth):
        raise ProblemError(
            422,
            "json_too_deep",
            f"The request body nests arrays and objects deeper than {max_json_depth} levels.",
            errors={"_body": [f"Nested deeper than {max_json_depth} levels."]},
        )
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and too-long integers included
        raise ProblemError(400, "malformed_body", f"The request body is not valid JSON: {exc}") from None
    found = list(_forbidden_strings(parsed)) if may_hold_forbidden_strings(data) else []
    if found:
        raise _refuse(_nest(found))
    return parsed


def _check_form() -> Response | None:
    """Form bodies are OAuth 2 token requests: refused as RFC 6749 says, 400 `invalid_request`."""
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    for key, value in request.form.items(multi=True):
        reason = forbidden_character(key) or forbidden_character(value)
        if reason:
            body = {"error": "invalid_request", "error_description": f"{_name(key)}: {reason}"}
            return Response(
                json.dumps(body),
                status=400,
                mimetype="application/json",
                headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
            )
    return None


RefusalAnswer = Callable[[ProblemError], Response]
V = TypeVar("V", bound=Callable[..., Any])


def refusals_answered_by(answer: RefusalAnswer) -> Callable[[V], V]:
    """Mark a view whose protocol has its own error format (ES2+): the guard's refusals go through `answer`."""

    def mark(view: V) -> V:
        view._mvne_refusal_answer = answer  # type: ignore[attr-defined]
        return view

    return mark


def register_guard(app: Flask, *, max_body_bytes: int, max_json_depth: int) -> None:
    """Check every request of `app` against the bounds above, before its view runs."""
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.before_request
    def guard_request() -> Response | None:
        try:
            _check_path_and_query()
            _check_headers()
            _check_body(max_body_bytes, max_json_depth)
        except ProblemError as refusal:
            view = app.view_functions.get(request.endpoint or "")
            answer: RefusalAnswer | None = getattr(view, "_mvne_refusal_answer", None)
            if answer is None:
                raise
            return answer(refusal)
        return _check_form()
