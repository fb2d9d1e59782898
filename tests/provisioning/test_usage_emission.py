"""Usage files emitted by the simulator land in storage and parse back to the totals asked for."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mvne.infra.storage import FileStorage
from mvne.provisioning.simulator import build_usage_records, create_network_simulator, emit_usage_file
from mvne.provisioning.usage_files import UsageFileRecord, parse_usage_file
from tests.provisioning.conftest import Network, line
from tests.support.servers import live_server

START = datetime(2025, 3, 1, 0, 0, tzinfo=UTC)


def _provision(network: Network, *numbers: int) -> None:
    for n in numbers:
        values = line(n)
        network.client.provision(values["imsi"], values["msisdn"], values["iccid"], values["ki"], values["opc"])


def _totals(records: list[UsageFileRecord]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        totals[(record.msisdn, record.service)] += record.quantity
    return dict(totals)


def test_emitted_totals_are_split_into_records_that_sum_exactly_to_them(network: Network) -> None:
    _provision(network, 1, 2)
    msisdns = [line(1)["msisdn"], line(2)["msisdn"]]

    response = network.admin(
        "/usage/emit",
        {
            "msisdns": msisdns,
            "data_mb": 1500,
            "voice_minutes": 30,
            "sms": 12,
            "mms": 2,
            "start": "2025-03-01T00:00:00Z",
            "records_per_service": 3,
        },
    )

    assert response.status_code == 201
    key = response.json()["key"]
    assert key.startswith("usage/incoming/simnet/")
    assert key.endswith(".csv")
    assert response.json()["records"] == 22  # 3 each of data, voice and SMS, 2 MMS, for each line
    parsed = parse_usage_file(network.storage.get(key))
    assert parsed.errors == []
    assert len(parsed.records) == 22
    for msisdn in msisdns:
        assert _totals(parsed.records)[(msisdn, "data")] == 1_500_000_000
        assert _totals(parsed.records)[(msisdn, "voice")] == 1800
        assert _totals(parsed.records)[(msisdn, "sms")] == 12
        assert _totals(parsed.records)[(msisdn, "mms")] == 2
    assert {r.imsi for r in parsed.records if r.msisdn == msisdns[0]} == {line(1)["imsi"]}


def test_emitted_records_are_spread_over_time_after_the_start(network: Network) -> None:
    _provision(network, 1)

    key = network.admin(
        "/usage/emit", {"msisdns": [line(1)["msisdn"]], "data_mb": 10, "start": "2025-03-01T01:00:00+01:00"}
    ).json()["key"]

    records = parse_usage_file(network.storage.get(key)).records
    times = sorted(r.started_at for r in records)
    assert times[0] == START
    assert len(set(times)) == len(records) == 3
    assert times[-1] - times[0] == timedelta(hours=2)


def test_emitted_record_ids_are_unique_across_files_of_the_network(network: Network) -> None:
    _provision(network, 1)
    body = {"msisdns": [line(1)["msisdn"]], "sms": 5}

    keys = [network.admin("/usage/emit", body).json()["key"] for _ in range(2)]

    ids = [r.record_id for key in keys for r in parse_usage_file(network.storage.get(key)).records]
    assert len(ids) == len(set(ids)) == 6
    assert all(record_id.startswith("simnet-") for record_id in ids)


def test_a_total_smaller_than_the_record_count_gives_fewer_records_never_empty_ones(network: Network) -> None:
    _provision(network, 1)

    response = network.admin("/usage/emit", {"msisdns": [line(1)["msisdn"]], "sms": 2, "records_per_service": 5})

    records = parse_usage_file(network.storage.get(response.json()["key"])).records
    assert [r.quantity for r in records] == [1, 1]


def test_explicit_records_are_written_as_given_with_the_line_imsi_filled_in(network: Network) -> None:
    _provision(network, 1)
    records = [
        {"msisdn": line(1)["msisdn"], "service": "voice", "quantity": 61, "started_at": "2025-03-01T08:00:00Z"},
        {
            "msisdn": line(1)["msisdn"],
            "service": "data",
            "quantity": 5,
            "started_at": "2025-03-01T09:00:00Z",
            "record_id": "replayed-record-1",
        },
    ]

    response = network.admin("/usage/emit", {"records": records})

    parsed = parse_usage_file(network.storage.get(response.json()["key"]))
    first, second = parsed.records
    assert (first.service, first.quantity, first.unit, first.imsi) == ("voice", 61, "seconds", line(1)["imsi"])
    assert first.started_at == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    assert second.record_id == "replayed-record-1"


def test_usage_for_unknown_or_terminated_numbers_is_refused_and_no_file_is_written(network: Network) -> None:
    _provision(network, 1, 2)
    network.client.terminate(line(2)["imsi"])
    before = network.storage.list("usage/")

    by_totals = network.admin(
        "/usage/emit", {"msisdns": [line(1)["msisdn"], line(2)["msisdn"], "+15550000000"], "sms": 1}
    )
    explicit = network.admin(
        "/usage/emit",
        {
            "records": [
                {"msisdn": line(2)["msisdn"], "service": "sms", "quantity": 1, "started_at": "2025-03-01T00:00:00Z"}
            ]
        },
    )

    assert by_totals.status_code == 422
    message = by_totals.json()["error"]["fields"]["msisdns"]
    assert line(2)["msisdn"] in message
    assert "+15550000000" in message
    assert line(1)["msisdn"] not in message
    assert explicit.status_code == 422
    assert "records[0].msisdn" in explicit.json()["error"]["fields"]
    assert network.storage.list("usage/") == before


def test_bad_usage_requests_name_each_bad_field(network: Network) -> None:
    _provision(network, 1)

    response = network.admin(
        "/usage/emit",
        {"msisdns": [line(1)["msisdn"]], "data_mb": -1, "sms": 1.5, "start": "yesterday", "records_per_service": 0},
    )
    nothing = network.admin("/usage/emit", {"msisdns": [line(1)["msisdn"]]})

    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"data_mb", "sms", "start", "records_per_service"}
    assert nothing.status_code == 422


def test_a_simulator_without_storage_says_so_when_asked_for_usage() -> None:
    with live_server(create_network_simulator()) as base_url:
        response = httpx.post(f"{base_url}/usage/emit", json={"msisdns": ["+447900000001"], "sms": 1})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_not_configured"


def test_emit_usage_file_writes_one_file_a_cli_can_produce_without_the_simulator(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    records = build_usage_records(
        [("+447900000001", "001010000000001")], data_bytes=1_000_001, voice_seconds=7, start=START
    )

    key = emit_usage_file(storage, "othernet", records)

    assert storage.list("usage/incoming/othernet/") == [key]
    parsed = parse_usage_file(storage.get(key))
    assert [r.quantity for r in parsed.records] == [333_334, 333_334, 333_333, 3, 2, 2]
    assert [r.record_id.rsplit("-", 1)[1] for r in parsed.records] == ["1", "2", "3", "4", "5", "6"]


def test_without_a_start_usage_lies_between_the_line_joining_and_now(network: Network) -> None:
    _provision(network, 1)
    joined = datetime.fromisoformat(network.client.get(line(1)["imsi"])["created_at"])
    time.sleep(3.5)  # usage needs a moment of service to lie in

    key = network.admin(
        "/usage/emit", {"msisdns": [line(1)["msisdn"]], "data_mb": 30, "voice_minutes": 3, "sms": 3}
    ).json()["key"]

    records = parse_usage_file(network.storage.get(key)).records
    assert len(records) == 9
    assert all(joined < r.started_at <= datetime.now(UTC) for r in records)
