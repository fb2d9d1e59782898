"""The simulator's own controls under /sim-admin/ (not ES2+)."""

from __future__ import annotations

import pytest

from mvne.esim.adapters import Es2PlusClient, SmdpProtocolError
from tests.esim.conftest import PROFILE_TYPE, REQUESTER, Recorder, Simulator, iccid


def test_loading_the_same_profiles_again_changes_nothing(smdp: Simulator) -> None:
    rows = {"profiles": [{"iccid": iccid(1), "imsi": "001010000000001", "profile_type": PROFILE_TYPE}]}
    assert smdp.admin.post("/sim-admin/profiles", json=rows).json() == {"loaded": 1, "unchanged": 0}
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
    assert smdp.admin.post("/sim-admin/profiles", json=rows).json() == {"loaded": 0, "unchanged": 1}
    assert smdp.state_of(iccid(1))["state"] == "Allocated"


def test_loading_other_data_for_a_known_iccid_is_a_conflict(smdp: Simulator) -> None:
    smdp.load(1)
    rows = {"profiles": [{"iccid": iccid(1), "imsi": "001019999999999", "profile_type": PROFILE_TYPE}]}
    response = smdp.admin.post("/sim-admin/profiles", json=rows)
    assert response.status_code == 409
    assert iccid(1) in response.json()["error"]
    assert smdp.state_of(iccid(1))["imsi"] == "001010000000001"


def test_a_load_with_one_conflict_loads_nothing(smdp: Simulator) -> None:
    smdp.load(1)
    rows = {
        "profiles": [
            {"iccid": iccid(2), "imsi": "001010000000002", "profile_type": PROFILE_TYPE},
            {"iccid": iccid(3), "imsi": "001010000000001", "profile_type": PROFILE_TYPE},
        ]
    }
    assert smdp.admin.post("/sim-admin/profiles", json=rows).status_code == 409
    assert smdp.admin.get(f"/sim-admin/profiles/{iccid(2)}").status_code == 404


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"iccid": "8944990000000000001", "imsi": "001010000000001", "profile_type": "x"}, "iccid"),
        ({"iccid": iccid(1), "imsi": "00101-1", "profile_type": "x"}, "imsi"),
        ({"iccid": iccid(1), "imsi": "001010000000001", "profile_type": ""}, "profile_type"),
    ],
)
def test_loading_a_malformed_profile_is_refused_with_400(smdp: Simulator, row: dict[str, str], reason: str) -> None:
    response = smdp.admin.post("/sim-admin/profiles", json={"profiles": [row]})
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_the_profile_view_never_shows_the_confirmation_code_hash(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=False, confirmation_code="1234")
    view = smdp.state_of(iccid(1))
    assert set(view) == {
        "iccid",
        "imsi",
        "profile_type",
        "state",
        "eid",
        "matching_id",
        "confirmation_code_required",
        "smds_address",
        "requester",
        "updated_at",
    }
    assert view["requester"] == REQUESTER


def test_an_unknown_profile_is_404_and_a_malformed_iccid_is_400(smdp: Simulator) -> None:
    assert smdp.admin.get(f"/sim-admin/profiles/{iccid(5)}").status_code == 404
    assert smdp.admin.get("/sim-admin/profiles/123").status_code == 400


def test_only_a_released_profile_can_be_downloaded(smdp: Simulator, recorder: Recorder) -> None:
    smdp.restart(None, notification_url=recorder.url)
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=False)
    response = smdp.admin.post(f"/sim-admin/profiles/{iccid(1)}/download", json={})
    assert response.status_code == 409
    assert smdp.state_of(iccid(1))["state"] == "Confirmed"
    assert recorder.received == []


def test_the_notification_url_can_be_set_at_run_time(smdp: Simulator, recorder: Recorder) -> None:
    smdp.load(1)
    assert smdp.admin.post("/sim-admin/config", json={"notification_url": recorder.url}).json() == {
        "smdp_address": "smdp.sim.mvne.test",
        "notification_url": recorder.url,
    }
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=True)
    smdp.admin.post(f"/sim-admin/profiles/{iccid(1)}/download", json={})
    assert [body["notificationPointId"] for body in recorder.received] == [3, 4]


@pytest.mark.parametrize(
    "fault",
    [
        {"function": "getProfileStatus", "subject_code": "8.2.1", "reason_code": "3.9"},
        {"function": "downloadOrder", "subject_code": "8.2.1"},
        {"function": "downloadOrder", "subject_code": "8.2.1", "reason_code": "3.9", "count": 0},
        {"function": "downloadOrder", "http_status": 200},
    ],
)
def test_a_malformed_fault_is_refused_with_400(smdp: Simulator, fault: dict[str, object]) -> None:
    assert smdp.admin.post("/sim-admin/faults", json=fault).status_code == 400


def test_clearing_faults_lets_calls_through_again(smdp: Simulator) -> None:
    smdp.load(1)
    fault = {"function": "downloadOrder", "subject_code": "1.2", "reason_code": "4.4", "count": 5}
    assert smdp.admin.post("/sim-admin/faults", json=fault).json()["pending"]["downloadOrder"] == 5
    assert smdp.admin.delete("/sim-admin/faults").status_code == 200
    with smdp.client() as client:
        assert client.download_order(iccid=iccid(1)) == iccid(1)


def test_a_latency_outside_the_allowed_range_is_refused(smdp: Simulator) -> None:
    assert smdp.admin.post("/sim-admin/latency", json={"ms": -1}).status_code == 400
    assert smdp.admin.post("/sim-admin/latency", json={"ms": "fast"}).status_code == 400


def test_healthz_answers_200(smdp: Simulator) -> None:
    assert smdp.admin.get("/healthz").status_code == 200


def test_a_server_that_does_not_speak_es2plus_raises_a_protocol_error(recorder: Recorder) -> None:
    base_url = recorder.url.removesuffix("/gsma/rsp2/es2plus/handleDownloadProgressInfo")
    client = Es2PlusClient(base_url, REQUESTER)
    with client, pytest.raises(SmdpProtocolError, match="HTTP 404") as excinfo:
        client.release_profile(iccid=iccid(1))
    assert not excinfo.value.retryable
