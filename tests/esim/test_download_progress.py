from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from mvne.esim.adapters import InvalidNotification, parse_download_progress
from tests.esim.conftest import PROFILE_TYPE, eid, iccid

VALID: dict[str, Any] = {
    "header": {"functionRequesterIdentifier": "smdp.example.com", "functionCallIdentifier": "N-1"},
    "eid": eid(1),
    "iccid": iccid(1) + "F",
    "profileType": PROFILE_TYPE,
    "timestamp": "2024-05-01T10:00:00Z",
    "notificationPointId": 4,
    "notificationPointStatus": {
        "status": "Failed",
        "statusCodeData": {"subjectCode": "8.2.10", "reasonCode": "4.2", "message": "loadBppExecutionError"},
    },
    "resultData": "MAA=",
}


def test_parse_download_progress_reads_every_field_of_the_notification() -> None:
    progress = parse_download_progress(VALID)
    assert progress.iccid == iccid(1)
    assert progress.eid == eid(1)
    assert progress.profile_type == PROFILE_TYPE
    assert progress.timestamp == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert (progress.notification_point_id, progress.point_name) == (4, "bpp_installation")
    assert (progress.status, progress.subject_code, progress.reason_code) == ("Failed", "8.2.10", "4.2")
    assert not progress.succeeded
    assert not progress.installed
    assert progress.result_data == b"\x30\x00"
    assert (progress.requester_id, progress.call_id) == ("smdp.example.com", "N-1")


def test_a_minimal_successful_download_notification_is_accepted() -> None:
    payload = copy.deepcopy(VALID)
    del payload["eid"], payload["resultData"]
    payload["notificationPointId"] = 3
    payload["notificationPointStatus"] = {"status": "Executed-Success"}
    progress = parse_download_progress(payload)
    assert progress.succeeded
    assert progress.eid is None
    assert progress.point_name == "bpp_download"


def _set(path: str, value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    target = payload
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("header", _DELETE),
        ("header.functionCallIdentifier", _DELETE),
        ("iccid", _DELETE),
        ("iccid", "8944990000000000001"),
        ("eid", "8904903200000000000000000000000"),
        ("profileType", ""),
        ("timestamp", "2024-05-01T10:00:00"),
        ("timestamp", "yesterday"),
        ("notificationPointId", "4"),
        ("notificationPointId", True),
        ("notificationPointStatus", _DELETE),
        ("notificationPointStatus.status", "Done"),
        ("notificationPointStatus.statusCodeData.reasonCode", _DELETE),
        ("notificationPointStatus.statusCodeData.subjectCode", "8.2.x"),
        ("resultData", "not base64!"),
    ],
)
def test_parse_download_progress_names_the_bad_field(path: str, value: Any) -> None:
    with pytest.raises(InvalidNotification) as excinfo:
        parse_download_progress(_set(path, value))
    assert excinfo.value.field == path
    assert isinstance(excinfo.value, ValueError)
    assert str(excinfo.value).startswith(path)
