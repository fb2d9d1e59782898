"""One host-network simulator per test module on a real port, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mvne.infra.storage import FileStorage
from mvne.provisioning.adapters import HostNetwork, HostNetworkClient
from mvne.provisioning.simulator import create_network_simulator
from tests.support.servers import live_server


@dataclass(frozen=True)
class Network:
    """A running simulator: its URL, a client on it, and the storage its usage files go to."""

    base_url: str
    # Typed as the interface so the type checker proves the client implements it.
    client: HostNetwork
    storage: FileStorage
    state_path: Path

    def admin(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """POST to one of the simulator's admin or usage endpoints."""
        return httpx.post(self.base_url + path, json=body or {}, timeout=5)


def line(n: int) -> dict[str, str]:
    """The SIM and number of test line `n`; different `n`, nothing shared."""
    return {
        "imsi": f"001010{n:09d}",
        "msisdn": f"+4479000{n:05d}",
        "iccid": f"89440000000000{n:05d}",
        "ki": f"{n:032x}",
        "opc": f"{n + 7_000:032x}",
    }


@pytest.fixture(scope="module")
def _running_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    # A werkzeug server takes up to half a second to stop, so tests share one and reset it.
    folder = tmp_path_factory.mktemp("network")
    storage = FileStorage(folder / "objects")
    state_path = folder / "state.json"
    app = create_network_simulator(storage=storage, state_path=state_path)
    with live_server(app) as base_url, HostNetworkClient(base_url, timeout=5) as client:
        yield Network(base_url=base_url, client=client, storage=storage, state_path=state_path)


@pytest.fixture
def network(_running_network: Network) -> Network:
    response = _running_network.admin("/sim-admin/reset")
    assert response.status_code == 200
    return _running_network
