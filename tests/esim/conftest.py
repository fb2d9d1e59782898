"""Fixtures that serve the SM-DP+ simulator and a notification recorder on real loopback ports."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import flask
import httpx
import pytest

from mvne.esim.adapters import Es2PlusClient
from mvne.esim.identifiers import make_eid, make_iccid, make_imsi
from mvne.esim.simulator import create_smdp_simulator
from tests.support.servers import live_server

SMDP_ADDRESS = "smdp.sim.mvne.test"
REQUESTER = "mvne-operator-1"
PROFILE_TYPE = "mvne-consumer-5g"
ICCID_PREFIX = "8944990"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def iccid(serial: int) -> str:
    """Return the test ICCID with this serial."""
    return make_iccid(ICCID_PREFIX, serial)


def eid(serial: int) -> str:
    """Return a valid test EID with this serial."""
    return make_eid(f"890490320000000000000000{serial:06d}")


class _Slot:
    """One loopback server for the whole session; each test plugs in a fresh app.

    A werkzeug server takes up to half a second to shut down, so one per test would blow the time budget.
    """

    def __init__(self) -> None:
        self.app: WsgiApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        assert self.app is not None, "no app plugged into the test server"
        return self.app(environ, start_response)


@pytest.fixture(scope="session")
def _smdp_slot() -> Iterator[tuple[_Slot, str]]:
    slot = _Slot()
    with live_server(slot) as base_url:
        yield slot, base_url


@pytest.fixture(scope="session")
def _recorder_slot() -> Iterator[tuple[_Slot, str]]:
    slot = _Slot()
    with live_server(slot) as base_url:
        yield slot, base_url


@dataclass
class Simulator:
    """A running SM-DP+ simulator and helpers to drive it."""

    base_url: str
    slot: _Slot
    admin: httpx.Client

    def restart(self, state_path: pathlib.Path | None, notification_url: str | None = None) -> None:
        """Replace the simulator with a brand new one (a process restart, as far as state goes)."""
        self.slot.app = create_smdp_simulator(
            smdp_address=SMDP_ADDRESS, state_path=state_path, notification_url=notification_url
        )

    def client(self, requester: str = REQUESTER, *, timeout: float = 5.0) -> Es2PlusClient:
        """Return an ES2+ client for this simulator."""
        return Es2PlusClient(self.base_url, requester, timeout=timeout)

    def load(self, *serials: int, profile_type: str = PROFILE_TYPE) -> list[str]:
        """Load profiles with these serials into the inventory; return their ICCIDs."""
        rows = [{"iccid": iccid(s), "imsi": make_imsi("001", "01", s), "profile_type": profile_type} for s in serials]
        response = self.admin.post("/sim-admin/profiles", json={"profiles": rows})
        assert response.status_code == 200, response.text
        return [row["iccid"] for row in rows]

    def state_of(self, iccid_value: str) -> dict[str, Any]:
        """Return the simulator's admin view of a profile."""
        response = self.admin.get(f"/sim-admin/profiles/{iccid_value}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def raw(self, function: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST a hand-written ES2+ request."""
        return self.admin.post(f"/gsma/rsp2/es2plus/{function}", json=body, headers=headers)


@pytest.fixture
def smdp(_smdp_slot: tuple[_Slot, str]) -> Iterator[Simulator]:
    slot, base_url = _smdp_slot
    with httpx.Client(base_url=base_url, timeout=5.0) as admin:
        simulator = Simulator(base_url=base_url, slot=slot, admin=admin)
        simulator.restart(None)
        yield simulator
    slot.app = None


@dataclass
class Recorder:
    """An operator endpoint that records the HandleDownloadProgressInfo notifications it receives."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def recorder(_recorder_slot: tuple[_Slot, str]) -> Iterator[Recorder]:
    slot, base_url = _recorder_slot
    result = Recorder(url=f"{base_url}/gsma/rsp2/es2plus/handleDownloadProgressInfo")
    app = flask.Flask("notification_recorder")

    @app.post("/gsma/rsp2/es2plus/handleDownloadProgressInfo")
    def receive() -> tuple[str, int]:
        result.received.append(flask.request.get_json(force=True))
        result.headers.append(dict(flask.request.headers))
        return "", 204

    slot.app = app
    yield result
    slot.app = None
