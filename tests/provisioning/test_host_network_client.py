"""The host-network client against the simulator over real HTTP: every operation and its errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from mvne.provisioning.adapters import (
    HostNetwork,
    HostNetworkClient,
    HostNetworkError,
    HostNetworkUnavailable,
)
from mvne.provisioning.simulator import create_network_simulator
from tests.provisioning.conftest import Network, line
from tests.support.servers import live_server


def _provision(client: HostNetwork, n: int, **overrides: Any) -> dict[str, Any]:
    values = {**line(n), **overrides}
    services = values.pop("services", None)
    return client.provision(
        values["imsi"], values["msisdn"], values["iccid"], values["ki"], values["opc"], services=services
    )


def _error(call: Callable[[], object]) -> HostNetworkError:
    with pytest.raises(HostNetworkError) as excinfo:
        call()
    return excinfo.value


def test_provisioning_creates_an_active_subscriber_with_every_service(network: Network) -> None:
    subscriber = _provision(network.client, 1)

    assert subscriber["imsi"] == line(1)["imsi"]
    assert subscriber["msisdn"] == line(1)["msisdn"]
    assert subscriber["iccid"] == line(1)["iccid"]
    assert subscriber["state"] == "active"
    assert subscriber["services"] == ["data", "voice", "sms"]
    assert subscriber["active_services"] == ["data", "voice", "sms"]
    assert network.client.get(line(1)["imsi"]) == subscriber


def test_provisioning_can_limit_the_services_of_a_line(network: Network) -> None:
    subscriber = _provision(network.client, 1, services=["sms", "data"])

    assert subscriber["services"] == ["data", "sms"]


def test_provisioning_the_same_line_again_answers_the_same_subscriber(network: Network) -> None:
    body = line(1)
    first = httpx.post(f"{network.base_url}/subscribers", json=body)
    second = httpx.post(f"{network.base_url}/subscribers", json=body)

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert first.headers["location"].endswith(f"/subscribers/{body['imsi']}")


def test_provisioning_again_does_not_undo_later_changes(network: Network) -> None:
    _provision(network.client, 1)
    network.client.suspend(line(1)["imsi"])

    again = _provision(network.client, 1)

    assert again["state"] == "suspended"


def test_no_answer_ever_carries_the_sim_keys(network: Network) -> None:
    answers = [
        _provision(network.client, 1),
        network.client.get(line(1)["imsi"]),
        network.client.swap_sim(
            line(1)["imsi"], **{k: line(2)[k] for k in ("iccid", "ki", "opc")}, new_imsi=line(2)["imsi"]
        ),
    ]

    for answer in answers:
        assert "ki" not in answer
        assert "opc" not in answer
        assert line(1)["ki"] not in str(answer)


def test_a_msisdn_held_by_another_imsi_is_refused_as_msisdn_in_use(network: Network) -> None:
    _provision(network.client, 1)

    error = _error(lambda: _provision(network.client, 2, msisdn=line(1)["msisdn"]))

    assert (error.status, error.code, error.retryable) == (409, "msisdn_in_use", False)
    assert _error(lambda: network.client.get(line(2)["imsi"])).status == 404


def test_an_iccid_held_by_another_imsi_is_refused_as_iccid_in_use(network: Network) -> None:
    _provision(network.client, 1)

    error = _error(lambda: _provision(network.client, 2, iccid=line(1)["iccid"]))

    assert (error.status, error.code) == (409, "iccid_in_use")


def test_the_same_imsi_with_other_values_is_refused_as_imsi_in_use(network: Network) -> None:
    _provision(network.client, 1)

    error = _error(lambda: _provision(network.client, 1, ki="f" * 32))

    assert (error.status, error.code) == (409, "imsi_in_use")


def test_bad_fields_are_refused_with_one_error_per_field(network: Network) -> None:
    error = _error(
        lambda: network.client.provision("12ab", "447900000001", "1234", "zz" * 16, "0" * 31, services=["data", "fax"])
    )

    assert (error.status, error.code) == (422, "validation_failed")
    assert set(error.fields) == {"imsi", "msisdn", "iccid", "ki", "opc", "services"}
    assert "fax" in error.fields["services"]


def test_a_body_that_is_not_a_json_object_is_a_bad_request(network: Network) -> None:
    response = httpx.post(
        f"{network.base_url}/subscribers", content=b"[1, 2", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_an_unknown_imsi_is_not_found_for_every_operation(network: Network) -> None:
    client = network.client
    unknown = line(99)["imsi"]
    calls: Iterable[Callable[[], object]] = [
        lambda: client.get(unknown),
        lambda: client.suspend(unknown),
        lambda: client.resume(unknown),
        lambda: client.bar(unknown, ["data"]),
        lambda: client.unbar(unknown, ["data"]),
        lambda: client.swap_sim(unknown, iccid=line(98)["iccid"], new_imsi=line(98)["imsi"], ki="a" * 32, opc="b" * 32),
        lambda: client.terminate(unknown),
    ]

    for call in calls:
        error = _error(call)
        assert (error.status, error.code, error.retryable) == (404, "subscriber_not_found", False)


def test_a_suspended_line_has_no_active_service_until_it_is_resumed(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]

    suspended = network.client.suspend(imsi)
    resumed = network.client.resume(imsi)

    assert (suspended["state"], suspended["active_services"]) == ("suspended", [])
    assert (resumed["state"], resumed["active_services"]) == ("active", ["data", "voice", "sms"])


def test_repeating_suspend_or_resume_changes_nothing_so_retries_are_safe(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]

    first = network.client.suspend(imsi)
    second = network.client.suspend(imsi)
    network.client.resume(imsi)
    resumed_again = network.client.resume(imsi)

    assert first == second
    assert resumed_again["state"] == "active"


def test_barring_removes_services_and_unbarring_gives_them_back(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]

    barred = network.client.bar(imsi, ["data", "sms"])
    partly = network.client.unbar(imsi, ["sms"])

    assert barred["barred"] == ["data", "sms"]
    assert barred["active_services"] == ["voice"]
    assert partly["barred"] == ["data"]
    assert partly["active_services"] == ["voice", "sms"]
    assert network.client.get(imsi)["barred"] == ["data"]


def test_barring_a_service_the_line_does_not_have_is_refused(network: Network) -> None:
    imsi = _provision(network.client, 1, services=["voice"])["imsi"]

    error = _error(lambda: network.client.bar(imsi, ["data"]))

    assert (error.status, error.code) == (422, "validation_failed")
    assert "data" in error.fields["services"]


def test_swapping_the_sim_keeps_the_number_state_and_barring_on_the_new_imsi(network: Network) -> None:
    old_imsi = _provision(network.client, 1)["imsi"]
    network.client.bar(old_imsi, ["voice"])
    network.client.suspend(old_imsi)
    new = line(2)

    swapped = network.client.swap_sim(old_imsi, iccid=new["iccid"], new_imsi=new["imsi"], ki=new["ki"], opc=new["opc"])

    assert (swapped["imsi"], swapped["iccid"], swapped["msisdn"]) == (
        new["imsi"],
        new["iccid"],
        line(1)["msisdn"],
    )
    assert (swapped["state"], swapped["barred"], swapped["replaces"]) == ("suspended", ["voice"], old_imsi)
    old = network.client.get(old_imsi)
    assert (old["state"], old["replaced_by"]) == ("terminated", new["imsi"])


def test_the_same_sim_swap_again_answers_the_new_subscriber(network: Network) -> None:
    old_imsi = _provision(network.client, 1)["imsi"]
    new = line(2)

    def swap() -> dict[str, Any]:
        return network.client.swap_sim(old_imsi, iccid=new["iccid"], new_imsi=new["imsi"], ki=new["ki"], opc=new["opc"])

    assert swap() == swap()


def test_a_sim_swap_to_an_imsi_already_provisioned_is_refused(network: Network) -> None:
    old_imsi = _provision(network.client, 1)["imsi"]
    _provision(network.client, 2)
    other = line(3)

    error = _error(
        lambda: network.client.swap_sim(
            old_imsi, iccid=other["iccid"], new_imsi=line(2)["imsi"], ki=other["ki"], opc=other["opc"]
        )
    )

    assert (error.status, error.code) == (409, "imsi_in_use")
    assert network.client.get(old_imsi)["state"] == "active"


def test_terminating_frees_the_number_for_another_sim(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]

    terminated = network.client.terminate(imsi)
    reused = _provision(network.client, 2, msisdn=line(1)["msisdn"], iccid=line(1)["iccid"])

    assert terminated["state"] == "terminated"
    assert terminated["terminated_at"]
    assert reused["msisdn"] == line(1)["msisdn"]
    assert network.client.terminate(imsi) == network.client.get(imsi)


def test_a_terminated_line_refuses_every_change_as_an_invalid_transition(network: Network) -> None:
    client = network.client
    imsi = _provision(client, 1)["imsi"]
    client.terminate(imsi)
    new = line(2)
    calls: Iterable[Callable[[], object]] = [
        lambda: client.suspend(imsi),
        lambda: client.resume(imsi),
        lambda: client.bar(imsi, ["data"]),
        lambda: client.unbar(imsi, ["data"]),
        lambda: client.swap_sim(imsi, iccid=new["iccid"], new_imsi=new["imsi"], ki=new["ki"], opc=new["opc"]),
    ]

    for call in calls:
        error = _error(call)
        assert (error.status, error.code) == (409, "invalid_transition")


def test_a_terminated_imsi_is_not_provisioned_again(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]
    network.client.terminate(imsi)

    error = _error(lambda: _provision(network.client, 1))

    assert (error.status, error.code) == (409, "imsi_terminated")


def test_a_fault_fails_the_next_calls_of_its_operation_and_changes_nothing(network: Network) -> None:
    assert network.admin("/sim-admin/faults", {"operation": "provision", "status": 503, "count": 2}).status_code == 201

    errors = [_error(lambda: _provision(network.client, 1)) for _ in range(2)]
    missing = _error(lambda: network.client.get(line(1)["imsi"]))
    created = _provision(network.client, 1)

    assert [(e.status, e.code, e.retryable) for e in errors] == [(503, "injected_fault", True)] * 2
    assert missing.status == 404
    assert created["state"] == "active"


def test_a_fault_after_the_change_loses_the_answer_and_a_retry_finds_the_work_done(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]
    network.admin("/sim-admin/faults", {"operation": "suspend", "status": 500, "when": "after"})

    error = _error(lambda: network.client.suspend(imsi))
    retried = network.client.suspend(imsi)

    assert (error.status, error.retryable) == (500, True)
    assert retried["state"] == "suspended"


def test_a_fault_on_any_operation_hits_whichever_call_comes_next(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]
    network.admin("/sim-admin/faults", {"operation": "*", "status": 429})

    error = _error(lambda: network.client.get(imsi))

    assert (error.status, error.retryable) == (429, True)
    assert network.client.get(imsi)["imsi"] == imsi


def test_a_client_error_fault_is_not_retryable(network: Network) -> None:
    network.admin("/sim-admin/faults", {"operation": "get", "status": 400})

    error = _error(lambda: network.client.get(line(1)["imsi"]))

    assert (error.status, error.retryable) == (400, False)


def test_faults_can_be_listed_and_cleared(network: Network) -> None:
    network.admin("/sim-admin/faults", {"operation": "swap-sim", "status": 502, "count": 3})

    listed = httpx.get(f"{network.base_url}/sim-admin/faults").json()["faults"]
    cleared = httpx.delete(f"{network.base_url}/sim-admin/faults").json()["faults"]

    assert listed == [{"operation": "swap_sim", "status": 502, "remaining": 3, "when": "before"}]
    assert cleared == []


def test_a_fault_with_bad_fields_is_refused(network: Network) -> None:
    response = network.admin("/sim-admin/faults", {"operation": "fly", "status": 200, "count": 0, "when": "never"})

    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"operation", "status", "count", "when"}


def test_latency_longer_than_the_client_timeout_makes_the_network_unavailable(network: Network) -> None:
    imsi = _provision(network.client, 1)["imsi"]
    network.admin("/sim-admin/latency", {"ms": 400})
    impatient = HostNetworkClient(network.base_url, timeout=0.1)

    with pytest.raises(HostNetworkUnavailable) as excinfo:
        impatient.get(imsi)

    assert excinfo.value.retryable
    network.admin("/sim-admin/latency", {"ms": 0})
    assert impatient.get(imsi)["imsi"] == imsi
    impatient.close()


def test_a_network_that_does_not_listen_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with (
        HostNetworkClient(f"http://127.0.0.1:{port}", timeout=1) as client,
        pytest.raises(HostNetworkUnavailable),
    ):
        client.get(line(1)["imsi"])


def test_an_error_page_from_a_proxy_in_between_still_gives_a_host_network_error() -> None:
    def proxy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return Response("<html>Bad gateway</html>", status=502, content_type="text/html")(environ, start_response)

    with live_server(proxy) as base_url, HostNetworkClient(base_url) as client:
        error = _error(lambda: client.get(line(1)["imsi"]))

    assert (error.status, error.code, error.retryable) == (502, "http_502", True)
    assert "Bad gateway" in error.message


def test_a_given_http_client_is_used_and_left_open(network: Network) -> None:
    with httpx.Client(headers={"x-test": "1"}) as http:
        with HostNetworkClient(network.base_url, http=http) as client:
            _provision(client, 1)

        assert not http.is_closed
        assert http.get(f"{network.base_url}/subscribers/{line(1)['imsi']}").status_code == 200


def test_subscribers_survive_a_restart_with_the_same_state_file(tmp_path: Path) -> None:
    state_path = tmp_path / "network" / "state.json"
    with (
        live_server(create_network_simulator(state_path=state_path)) as base_url,
        HostNetworkClient(base_url) as client,
    ):
        _provision(client, 1)
        client.bar(line(1)["imsi"], ["sms"])
        _provision(client, 2)
        client.terminate(line(2)["imsi"])

    with (
        live_server(create_network_simulator(state_path=state_path)) as base_url,
        HostNetworkClient(base_url) as client,
    ):
        first = client.get(line(1)["imsi"])
        second = client.get(line(2)["imsi"])
        again = _provision(client, 3, msisdn=line(2)["msisdn"])

    assert (first["state"], first["barred"]) == ("active", ["sms"])
    assert second["state"] == "terminated"
    assert again["msisdn"] == line(2)["msisdn"]
    assert [p.name for p in state_path.parent.iterdir()] == ["state.json"]


def test_a_swap_and_a_reset_are_kept_and_a_first_format_state_file_is_still_read(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    first = {**line(1), "services": ["voice", "sms", "data"], "state": "suspended", "barred": ["data"]}
    state_path.write_text(json.dumps({"format": 1, "network": "simnet", "subscribers": [first]}, indent=1))
    with (
        live_server(create_network_simulator(state_path=state_path)) as base_url,
        HostNetworkClient(base_url) as client,
    ):
        kept = client.get(line(1)["imsi"])
        _provision(client, 2)
    assert (kept["state"], kept["barred"]) == ("suspended", ["data"])
    assert json.loads(state_path.read_text().splitlines()[0])["format"] == 2

    with (
        live_server(create_network_simulator(state_path=state_path)) as base_url,
        HostNetworkClient(base_url) as client,
    ):
        assert client.get(line(2)["imsi"])["state"] == "active"
        assert httpx.post(f"{base_url}/sim-admin/reset").status_code == 200
        _provision(client, 3)

    with (
        live_server(create_network_simulator(state_path=state_path)) as base_url,
        HostNetworkClient(base_url) as client,
    ):
        assert client.get(line(3)["imsi"])["state"] == "active"
        assert _error(lambda: client.get(line(1)["imsi"])).status == 404


def test_a_corrupt_state_file_is_refused_at_start(tmp_path: Path) -> None:
    state_path = tmp_path / "state.json"
    state_path.write_text("{not json", encoding="utf-8")

    with pytest.raises(ValueError, match="cannot be read"):
        create_network_simulator(state_path=state_path)


def test_the_simulator_works_mounted_under_a_path_prefix() -> None:
    platform = Response("platform", status=200)
    app = DispatcherMiddleware(platform, {"/sim/network": create_network_simulator(network_name="mounted")})

    with live_server(app) as base_url, HostNetworkClient(f"{base_url}/sim/network") as client:
        created = httpx.post(f"{base_url}/sim/network/subscribers", json=line(1))
        fetched = client.get(line(1)["imsi"])
        health = httpx.get(f"{base_url}/sim/network/healthz").json()

    assert created.headers["location"] == f"/sim/network/subscribers/{line(1)['imsi']}"
    assert fetched["msisdn"] == line(1)["msisdn"]
    assert health == {"status": "ok", "network": "mounted"}


def test_unknown_routes_answer_json_errors(network: Network) -> None:
    response = httpx.get(f"{network.base_url}/nowhere")
    wrong_method = httpx.put(f"{network.base_url}/subscribers")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_a_network_name_that_cannot_be_a_storage_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="network name"):
        create_network_simulator(network_name="Sim/Net")
