"""The ES2+ client against the SM-DP+ simulator, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import socket

import httpx
import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from mvne.esim.adapters import Es2PlusClient, Es2PlusError, SmdpUnavailable, parse_download_progress
from mvne.esim.identifiers import ActivationCode, is_valid_matching_id
from mvne.esim.simulator import create_smdp_simulator
from tests.esim.conftest import PROFILE_TYPE, REQUESTER, SMDP_ADDRESS, Recorder, Simulator, eid, iccid
from tests.support.servers import live_server


def _fails_with(excinfo: pytest.ExceptionInfo[Es2PlusError], code: str) -> None:
    assert excinfo.value.status == "Failed"
    assert excinfo.value.code == code, excinfo.value


def test_full_order_from_download_order_to_installed_notifies_the_operator(smdp: Simulator, recorder: Recorder) -> None:
    smdp.restart(None, notification_url=recorder.url)
    smdp.load(1, 2)
    device = eid(1)
    with smdp.client() as client:
        ordered = client.download_order(iccid=iccid(1))
        assert ordered == iccid(1)
        assert smdp.state_of(ordered)["state"] == "Allocated"

        result = client.confirm_order(iccid=ordered, release_flag=True)
    assert result.smdp_address == SMDP_ADDRESS
    assert result.eid is None
    assert smdp.state_of(ordered)["state"] == "Released"

    code = ActivationCode(result.smdp_address, result.matching_id)
    assert str(code) == f"LPA:1${SMDP_ADDRESS}${result.matching_id}"
    assert ActivationCode.parse(str(code)).matching_id == result.matching_id

    response = smdp.admin.post(f"/sim-admin/profiles/{ordered}/download", json={"eid": device})
    assert response.status_code == 200
    assert response.json()["notifications_delivered"] == [True, True]
    assert smdp.state_of(ordered)["state"] == "Installed"
    assert smdp.state_of(ordered)["eid"] == device

    progress = [parse_download_progress(body) for body in recorder.received]
    assert [p.notification_point_id for p in progress] == [3, 4]
    assert all(p.succeeded and p.iccid == ordered and p.eid == device for p in progress)
    assert all(p.profile_type == PROFILE_TYPE for p in progress)
    assert progress[1].installed
    assert progress[0].call_id != progress[1].call_id
    assert all(h["X-Admin-Protocol"].startswith("gsma/rsp/v2.") for h in recorder.headers)
    assert smdp.state_of(iccid(2))["state"] == "Available"


def test_a_failed_installation_ends_in_error_and_reports_8_2_10_4_2(smdp: Simulator, recorder: Recorder) -> None:
    smdp.restart(None, notification_url=recorder.url)
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=True)
    smdp.admin.post(f"/sim-admin/profiles/{iccid(1)}/download", json={"outcome": "install_failed"})
    last = parse_download_progress(recorder.received[-1])
    assert (last.notification_point_id, last.status, last.subject_code, last.reason_code) == (
        4,
        "Failed",
        "8.2.10",
        "4.2",
    )
    assert smdp.state_of(iccid(1))["state"] == "Error"


def test_download_order_by_profile_type_picks_an_available_profile(smdp: Simulator) -> None:
    smdp.load(1, 2)
    with smdp.client() as client:
        first = client.download_order(profile_type=PROFILE_TYPE)
        second = client.download_order(profile_type=PROFILE_TYPE)
    assert {first, second} == {iccid(1), iccid(2)}


def test_download_order_with_an_eid_links_the_profile_to_it(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(7))
        result = client.confirm_order(iccid=iccid(1), release_flag=False)
    view = smdp.state_of(iccid(1))
    assert (view["state"], view["eid"]) == ("Confirmed", eid(7))
    assert result.eid == eid(7)


def test_download_order_accepts_an_f_padded_iccid_for_the_same_profile(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        assert client.download_order(iccid=iccid(1) + "F") == iccid(1)
    assert smdp.state_of(iccid(1))["state"] == "Allocated"


def test_download_order_for_an_unknown_iccid_fails_with_8_2_1_3_9(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.download_order(iccid=iccid(99))
    _fails_with(excinfo, "8.2.1/3.9")
    assert excinfo.value.function == "downloadOrder"
    assert not excinfo.value.retryable


def test_download_order_for_an_iccid_in_use_fails_with_8_2_1_3_3(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.download_order(iccid=iccid(1))
    _fails_with(excinfo, "8.2.1/3.3")


def test_download_order_for_an_unknown_profile_type_fails_with_8_2_5_3_9(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.download_order(profile_type="no-such-type")
    _fails_with(excinfo, "8.2.5/3.9")


def test_download_order_when_the_pool_is_exhausted_fails_with_8_2_5_3_7(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(profile_type=PROFILE_TYPE)
        with pytest.raises(Es2PlusError) as excinfo:
            client.download_order(profile_type=PROFILE_TYPE)
    _fails_with(excinfo, "8.2.5/3.7")


def test_download_order_with_an_iccid_of_another_profile_type_fails_with_8_2_5_3_8(smdp: Simulator) -> None:
    smdp.load(1)
    smdp.load(2, profile_type="iot")
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.download_order(iccid=iccid(1), profile_type="iot")
    _fails_with(excinfo, "8.2.5/3.8")
    assert smdp.state_of(iccid(1))["state"] == "Available"


def test_download_order_without_iccid_or_profile_type_fails_with_1_6_2_3(smdp: Simulator) -> None:
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.download_order(eid=eid(1))
    _fails_with(excinfo, "1.6/2.3")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"iccid": "8944990000000000001"}, "iccid"),
        ({"iccid": iccid(1), "eid": "123"}, "eid"),
        ({"profileType": 5}, "profileType"),
    ],
)
def test_download_order_with_a_malformed_field_fails_with_1_6_2_1_naming_it(
    smdp: Simulator, fields: dict[str, object], field: str
) -> None:
    smdp.load(1)
    body = {"header": {"functionRequesterIdentifier": REQUESTER, "functionCallIdentifier": "c1"}, **fields}
    response = smdp.raw("downloadOrder", body)
    status = response.json()["header"]["functionExecutionStatus"]
    assert status["status"] == "Failed"
    assert (status["statusCodeData"]["subjectCode"], status["statusCodeData"]["reasonCode"]) == ("1.6", "2.1")
    assert status["statusCodeData"]["message"].startswith(field)
    assert smdp.state_of(iccid(1))["state"] == "Available"


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ({"functionCallIdentifier": "c1"}, "functionRequesterIdentifier"),
        ({"functionRequesterIdentifier": REQUESTER}, "functionCallIdentifier"),
        (None, "header"),
    ],
)
def test_a_request_without_its_header_fields_fails_with_1_6_2_2_over_http_200(
    smdp: Simulator, header: dict[str, str] | None, missing: str
) -> None:
    smdp.load(1)
    body: dict[str, object] = {"iccid": iccid(1)}
    if header is not None:
        body["header"] = header
    response = smdp.raw("downloadOrder", body, headers={"X-Admin-Protocol": "gsma/rsp/v2.5.0"})
    assert response.status_code == 200
    assert response.headers["X-Admin-Protocol"] == "gsma/rsp/v2.5.0"
    status = response.json()["header"]["functionExecutionStatus"]
    assert status["status"] == "Failed"
    assert status["statusCodeData"]["subjectCode"] == "1.6"
    assert status["statusCodeData"]["reasonCode"] == "2.2"
    assert missing in status["statusCodeData"]["message"]
    assert smdp.state_of(iccid(1))["state"] == "Available"


def test_a_successful_response_carries_the_admin_protocol_header_and_execution_status(smdp: Simulator) -> None:
    smdp.load(1)
    body = {"header": {"functionRequesterIdentifier": REQUESTER, "functionCallIdentifier": "c1"}, "iccid": iccid(1)}
    response = smdp.raw("downloadOrder", body)
    assert response.status_code == 200
    assert response.headers["X-Admin-Protocol"].startswith("gsma/rsp/v2.")
    assert response.json() == {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}, "iccid": iccid(1)}


def test_confirm_order_without_a_matching_id_generates_one(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        result = client.confirm_order(iccid=iccid(1), release_flag=False)
    assert result.matching_id
    assert is_valid_matching_id(result.matching_id)
    assert smdp.state_of(iccid(1))["matching_id"] == result.matching_id


def test_confirm_order_keeps_the_operators_matching_id(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        result = client.confirm_order(iccid=iccid(1), release_flag=True, matching_id="MY-ORDER-0001")
    assert result.matching_id == "MY-ORDER-0001"


def test_confirm_order_with_another_eid_fails_with_8_1_1_3_10(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.confirm_order(iccid=iccid(1), eid=eid(2), release_flag=True)
    _fails_with(excinfo, "8.1.1/3.10")
    assert smdp.state_of(iccid(1))["state"] == "Linked"


def test_confirm_order_with_a_matching_id_already_used_fails_with_8_2_6_3_3(smdp: Simulator) -> None:
    smdp.load(1, 2)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.download_order(iccid=iccid(2))
        client.confirm_order(iccid=iccid(1), release_flag=True, matching_id="SAME-ID")
        with pytest.raises(Es2PlusError) as excinfo:
            client.confirm_order(iccid=iccid(2), release_flag=True, matching_id="SAME-ID")
    _fails_with(excinfo, "8.2.6/3.3")


def test_confirm_order_with_an_empty_matching_id_and_no_eid_fails_with_8_1_1_2_2(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.confirm_order(iccid=iccid(1), release_flag=True, matching_id="")
    _fails_with(excinfo, "8.1.1/2.2")


def test_confirm_order_of_a_profile_not_ordered_fails_with_8_2_1_3_5(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.confirm_order(iccid=iccid(1), release_flag=True)
    _fails_with(excinfo, "8.2.1/3.5")


def test_another_operator_cannot_confirm_a_profile_it_did_not_order_8_2_1_1_2(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
    with smdp.client("other-operator") as other, pytest.raises(Es2PlusError) as excinfo:
        other.confirm_order(iccid=iccid(1), release_flag=True)
    _fails_with(excinfo, "8.2.1/1.2")


def test_the_confirmation_code_is_stored_only_as_its_sha256(smdp: Simulator, tmp_path: pathlib.Path) -> None:
    state_path = tmp_path / "smdp.json"
    smdp.restart(state_path)
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=True, confirmation_code="739164")
    view = smdp.state_of(iccid(1))
    assert view["confirmation_code_required"] is True
    assert "739164" not in json.dumps(view)
    saved = state_path.read_text()
    assert "739164" not in saved
    assert hashlib.sha256(b"739164").hexdigest() in saved


def test_confirm_then_release_profile_makes_the_profile_released(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=False)
        assert smdp.state_of(iccid(1))["state"] == "Confirmed"
        client.release_profile(iccid=iccid(1))
        assert smdp.state_of(iccid(1))["state"] == "Released"
        client.release_profile(iccid=iccid(1))
    assert smdp.state_of(iccid(1))["state"] == "Released"


def test_release_profile_before_confirm_order_fails_with_8_2_1_3_5(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.release_profile(iccid=iccid(1))
    _fails_with(excinfo, "8.2.1/3.5")
    assert smdp.state_of(iccid(1))["state"] == "Allocated"


def test_release_profile_of_an_unknown_iccid_fails_with_8_2_1_3_9(smdp: Simulator) -> None:
    with smdp.client() as client, pytest.raises(Es2PlusError) as excinfo:
        client.release_profile(iccid=iccid(42))
    _fails_with(excinfo, "8.2.1/3.9")


def test_cancel_order_to_available_frees_the_profile_for_a_new_order(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1))
        result = client.confirm_order(iccid=iccid(1), release_flag=True)
        client.cancel_order(iccid=iccid(1), final_status="Available", eid=eid(1), matching_id=result.matching_id)
        view = smdp.state_of(iccid(1))
        assert (view["state"], view["eid"], view["matching_id"]) == ("Available", None, None)
        assert client.download_order(profile_type=PROFILE_TYPE) == iccid(1)


def test_cancel_order_to_unavailable_retires_the_profile_for_good(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.cancel_order(iccid=iccid(1), final_status="Unavailable")
        assert smdp.state_of(iccid(1))["state"] == "Unavailable"
        with pytest.raises(Es2PlusError) as excinfo:
            client.download_order(iccid=iccid(1))
    _fails_with(excinfo, "8.2.1/3.3")


def test_cancel_order_with_another_eid_fails_with_8_2_1_3_10(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.cancel_order(iccid=iccid(1), final_status="Available", eid=eid(2))
    _fails_with(excinfo, "8.2.1/3.10")


def test_cancel_order_without_the_associated_eid_fails_with_1_6_2_3(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1))
        with pytest.raises(Es2PlusError) as excinfo:
            client.cancel_order(iccid=iccid(1), final_status="Available")
    _fails_with(excinfo, "1.6/2.3")


def test_cancel_order_with_another_matching_id_fails_with_8_2_6_3_10(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=False, matching_id="RIGHT-ONE")
        with pytest.raises(Es2PlusError) as excinfo:
            client.cancel_order(iccid=iccid(1), final_status="Available", matching_id="WRONG-ONE")
    _fails_with(excinfo, "8.2.6/3.10")
    assert smdp.state_of(iccid(1))["state"] == "Confirmed"


def test_cancel_order_after_the_download_fails_with_8_2_1_3_3(smdp: Simulator) -> None:
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1))
        result = client.confirm_order(iccid=iccid(1), release_flag=True)
        smdp.admin.post(f"/sim-admin/profiles/{iccid(1)}/download", json={})
        with pytest.raises(Es2PlusError) as excinfo:
            client.cancel_order(iccid=iccid(1), final_status="Available", eid=eid(1), matching_id=result.matching_id)
    _fails_with(excinfo, "8.2.1/3.3")


def test_a_retry_with_the_same_call_id_returns_the_first_answer_without_acting_again(smdp: Simulator) -> None:
    smdp.load(1, 2)
    with smdp.client() as client:
        first = client.download_order(profile_type=PROFILE_TYPE, call_id="order-42")
        again = client.download_order(profile_type=PROFILE_TYPE, call_id="order-42")
        assert again == first
        other = ({iccid(1), iccid(2)} - {first}).pop()
        assert smdp.state_of(other)["state"] == "Available"
        confirmed = client.confirm_order(iccid=first, release_flag=True, call_id="confirm-42")
        assert client.confirm_order(iccid=first, release_flag=True, call_id="confirm-42") == confirmed


def test_a_retried_failure_is_answered_the_same_even_after_the_state_changed(smdp: Simulator) -> None:
    with smdp.client() as client:
        with pytest.raises(Es2PlusError) as first:
            client.download_order(iccid=iccid(1), call_id="early")
        smdp.load(1)
        with pytest.raises(Es2PlusError) as again:
            client.download_order(iccid=iccid(1), call_id="early")
    _fails_with(again, first.value.code)
    assert smdp.state_of(iccid(1))["state"] == "Available"


def test_the_same_call_id_from_another_requester_is_a_separate_call(smdp: Simulator) -> None:
    smdp.load(1, 2)
    with smdp.client() as client, smdp.client("other-operator") as other:
        mine = client.download_order(profile_type=PROFILE_TYPE, call_id="shared-id")
        theirs = other.download_order(profile_type=PROFILE_TYPE, call_id="shared-id")
    assert {mine, theirs} == {iccid(1), iccid(2)}


def test_reusing_a_call_id_for_another_request_fails_with_1_6_2_1(smdp: Simulator) -> None:
    smdp.load(1, 2)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), call_id="once")
        with pytest.raises(Es2PlusError) as excinfo:
            client.download_order(iccid=iccid(2), call_id="once")
    _fails_with(excinfo, "1.6/2.1")
    assert smdp.state_of(iccid(2))["state"] == "Available"


def test_the_simulator_remembers_profiles_and_calls_across_a_restart(smdp: Simulator, tmp_path: pathlib.Path) -> None:
    state_path = tmp_path / "state" / "smdp.json"
    smdp.restart(state_path)
    smdp.load(1, 2)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1), eid=eid(1), call_id="before-restart")
        result = client.confirm_order(iccid=iccid(1), release_flag=False)

    smdp.restart(state_path)
    view = smdp.state_of(iccid(1))
    assert (view["state"], view["eid"], view["matching_id"]) == ("Confirmed", eid(1), result.matching_id)
    assert smdp.state_of(iccid(2))["state"] == "Available"
    with smdp.client() as client:
        assert client.download_order(iccid=iccid(1), eid=eid(1), call_id="before-restart") == iccid(1)
        client.release_profile(iccid=iccid(1))
    assert smdp.state_of(iccid(1))["state"] == "Released"
    assert [p.name for p in state_path.parent.iterdir()] == ["smdp.json"]


def test_a_call_appends_its_change_to_the_state_file_whatever_the_inventory_holds(
    smdp: Simulator, tmp_path: pathlib.Path
) -> None:
    state_path = tmp_path / "smdp.json"
    smdp.restart(state_path)
    smdp.load(*range(1, 3001))
    size = state_path.stat().st_size
    with smdp.client() as client:
        client.download_order(iccid=iccid(7), eid=eid(7))
        client.confirm_order(iccid=iccid(7), release_flag=True)
    # Two calls add their changed profile and remembered call: a few lines, not the inventory written again.
    grown = state_path.read_text().splitlines()
    assert 0 < state_path.stat().st_size - size < 5_000
    assert len(grown) == 1 + 3000 + 4

    smdp.restart(state_path)
    assert smdp.state_of(iccid(7))["state"] == "Released"
    assert smdp.state_of(iccid(3000))["state"] == "Available"


def test_a_state_file_of_the_first_format_is_read_and_kept_in_the_current_one(
    smdp: Simulator, tmp_path: pathlib.Path
) -> None:
    state_path = tmp_path / "smdp.json"
    profile = {
        "iccid": iccid(1),
        "imsi": "00101000000001",
        "profile_type": PROFILE_TYPE,
        "state": "Confirmed",
        "eid": eid(1),
        "matching_id": "ABC-123",
        "confirmation_code_sha256": None,
        "smds_address": None,
        "requester": REQUESTER,
        "updated_at": "2026-01-01T00:00:00Z",
    }
    state_path.write_text(json.dumps({"format": 1, "profiles": [profile], "calls": []}))
    smdp.restart(state_path)
    view = smdp.state_of(iccid(1))
    assert (view["state"], view["matching_id"]) == ("Confirmed", "ABC-123")
    assert json.loads(state_path.read_text().splitlines()[0])["format"] == 2
    with smdp.client() as client:
        client.release_profile(iccid=iccid(1))
    smdp.restart(state_path)
    assert smdp.state_of(iccid(1))["state"] == "Released"


def test_a_corrupt_state_file_stops_the_simulator_from_starting(tmp_path: pathlib.Path) -> None:
    state_path = tmp_path / "smdp.json"
    state_path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot load SM-DP\\+ simulator state"):
        create_smdp_simulator(smdp_address=SMDP_ADDRESS, state_path=state_path)


def test_an_injected_fault_fails_the_next_calls_of_that_function_only(smdp: Simulator) -> None:
    smdp.load(1, 2, 3)
    fault = {"function": "downloadOrder", "subject_code": "8.2.5", "reason_code": "3.7", "count": 2}
    assert smdp.admin.post("/sim-admin/faults", json=fault).status_code == 200
    with smdp.client() as client:
        for _ in range(2):
            with pytest.raises(Es2PlusError) as excinfo:
                client.download_order(profile_type=PROFILE_TYPE)
            _fails_with(excinfo, "8.2.5/3.7")
        assert client.download_order(profile_type=PROFILE_TYPE) == iccid(1)


def test_a_busy_answer_is_retryable_and_a_retry_with_the_same_call_id_succeeds(smdp: Simulator) -> None:
    smdp.load(1)
    smdp.admin.post(
        "/sim-admin/faults", json={"function": "downloadOrder", "subject_code": "1.2", "reason_code": "4.4"}
    )
    with smdp.client() as client:
        with pytest.raises(Es2PlusError) as excinfo:
            client.download_order(iccid=iccid(1), call_id="busy-then-ok")
        assert excinfo.value.retryable
        assert client.download_order(iccid=iccid(1), call_id="busy-then-ok") == iccid(1)


def test_a_server_error_raises_smdp_unavailable(smdp: Simulator) -> None:
    smdp.load(1)
    smdp.admin.post("/sim-admin/faults", json={"function": "releaseProfile", "http_status": 503})
    with smdp.client() as client, pytest.raises(SmdpUnavailable, match="HTTP 503") as excinfo:
        client.release_profile(iccid=iccid(1))
    assert excinfo.value.retryable


def test_an_answer_slower_than_the_timeout_raises_smdp_unavailable(smdp: Simulator) -> None:
    smdp.load(1)
    assert smdp.admin.post("/sim-admin/latency", json={"ms": 400}).status_code == 200
    with smdp.client(timeout=0.1) as client, pytest.raises(SmdpUnavailable, match="timed out"):
        client.download_order(iccid=iccid(1))


def test_a_refused_connection_raises_smdp_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Es2PlusClient(f"http://127.0.0.1:{port}", REQUESTER, timeout=1.0)
    with client, pytest.raises(SmdpUnavailable) as excinfo:
        client.release_profile(iccid=iccid(1))
    assert excinfo.value.retryable


def test_the_simulator_works_mounted_under_a_prefix() -> None:
    simulator = create_smdp_simulator(smdp_address=SMDP_ADDRESS)
    host = DispatcherMiddleware(lambda environ, start_response: [], {"/sim/smdp": simulator})
    with live_server(host) as base_url:
        load = httpx.post(
            f"{base_url}/sim/smdp/sim-admin/profiles",
            json={"profiles": [{"iccid": iccid(1), "imsi": "001010000000001", "profile_type": PROFILE_TYPE}]},
        )
        assert load.status_code == 200
        assert httpx.get(f"{base_url}/sim/smdp/healthz").status_code == 200
        with Es2PlusClient(f"{base_url}/sim/smdp/", REQUESTER) as client:
            assert client.download_order(profile_type=PROFILE_TYPE) == iccid(1)


def test_notification_failures_are_logged_and_do_not_stop_the_download(
    smdp: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smdp.restart(None, notification_url=f"http://127.0.0.1:{port}/notify")
    smdp.load(1)
    with smdp.client() as client:
        client.download_order(iccid=iccid(1))
        client.confirm_order(iccid=iccid(1), release_flag=True)
    with caplog.at_level(logging.WARNING, logger="mvne.esim.simulator"):
        response = smdp.admin.post(f"/sim-admin/profiles/{iccid(1)}/download", json={})
    assert response.status_code == 200
    assert response.json()["notifications_delivered"] == [False, False]
    assert smdp.state_of(iccid(1))["state"] == "Installed"
    assert sum("not delivered" in record.getMessage() for record in caplog.records) == 2
