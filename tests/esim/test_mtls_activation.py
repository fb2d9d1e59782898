"""A whole eSIM activation over mutual TLS both ways, on real loopback servers.

Our ES2+ client (built from the settings, as the platform builds it) calls the SM-DP+ simulator over
HTTPS with our client certificate; the simulator requires one. The simulator then notifies our
endpoint, itself served over TLS asking for client certificates, with the SM-DP+'s certificate.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select

from mvne.esim import sandbox
from mvne.esim.adapters import Es2PlusClient
from mvne.esim.models import Sim
from mvne.esim.simulator import create_smdp_simulator
from mvne.esim.tls import client_tls, server_tls, smdp_client_tls
from mvne.infra.crypto import SecretBox
from mvne.infra.migrate import upgrade
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.platform.app import create_app
from mvne.provisioning import service as provisioning
from mvne.provisioning.adapters import HostNetworkClient
from mvne.provisioning.simulator import create_network_simulator
from mvne.tenants.models import Event
from tests.conftest import create_postgres_database, drop_postgres_database, postgres_server_url
from tests.support.api import ApiCaller, customer, make_operator, make_tenant, published_offer
from tests.support.certs import EsPlusPki, TestCA, es2plus_pki, live_tls_server
from tests.support.runtimes import side_runtime
from tests.support.servers import live_server

SMDP_NAME = "smdp.mtls.mvne.test"
PATH = "/gsma/rsp2/es2plus/handleDownloadProgressInfo"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A database of this test's own (PostgreSQL when the suite runs on it): no other worker touches it."""
    server = postgres_server_url()
    if server is None:
        yield {"database_url": f"sqlite:///{(tmp_path / 'mtls.db').as_posix()}"}
        return
    app_url, platform_url, owner_url, name = create_postgres_database(server)
    try:
        yield {"database_url": app_url, "platform_database_url": platform_url, "migration_database_url": owner_url}
    finally:
        drop_postgres_database(server, name)


@dataclass
class Platform:
    settings: Settings
    rt: Runtime
    app: Flask
    pki: EsPlusPki
    base_url: str

    def operator_tls(self) -> ssl.SSLContext | bool:
        """What an operator's tool uses to reach the simulator: our client certificate, the CA."""
        return client_tls(
            str(self.pki.ca.cert_file), (str(self.pki.operator.cert_file), str(self.pki.operator.key_file))
        )


@pytest.fixture
def platform(tmp_path: Path, database: dict[str, Any]) -> Iterator[Platform]:
    pki = es2plus_pki(tmp_path / "pki", smdp_name=SMDP_NAME)
    ca = str(pki.ca.cert_file)
    web_port, smdp_port = _free_port(), _free_port()
    web_url = f"https://127.0.0.1:{web_port}"
    smdp_tls = client_tls(ca, (str(pki.smdp.cert_file), str(pki.smdp.key_file)))
    smdp_app = create_smdp_simulator(smdp_address=SMDP_NAME, notification_url=f"{web_url}{PATH}", notify_tls=smdp_tls)
    smdp_server = server_tls(str(pki.smdp.cert_file), str(pki.smdp.key_file), ca, require_client_cert=True)
    with (
        live_tls_server(smdp_app, smdp_server, port=smdp_port) as smdp_url,
        live_server(create_network_simulator()) as network_url,
    ):
        settings = (
            Settings(
                var_dir=tmp_path / "var",
                port=web_port,
                public_url=web_url,
                log_format="console",
                log_level="WARNING",
                embedded_simulators=False,
                smdp_url=smdp_url,
                smdp_address=SMDP_NAME,
                network_url=network_url,
                smdp_ca_file=ca,
                smdp_client_cert_file=str(pki.operator.cert_file),
                smdp_client_key_file=str(pki.operator.key_file),
                smdp_allowed_subjects=(SMDP_NAME,),
                **database,
            )
            .derived()
            .check()
        )
        upgrade(settings)
        with side_runtime(settings) as rt:
            app = create_app(rt=rt)
            # Our endpoint asks for a client certificate but serves the API to callers without one too.
            web_tls = server_tls(str(pki.operator.cert_file), str(pki.operator.key_file), ca, require_client_cert=False)
            with live_tls_server(app, web_tls, port=web_port) as base_url:
                yield Platform(settings, rt, app, pki, base_url)


def test_an_esim_is_ordered_released_downloaded_and_installed_over_mutual_tls_both_ways(platform: Platform) -> None:
    rt, settings = platform.rt, platform.settings
    client = platform.app.test_client()
    operator = make_operator(client, rt)
    tenant = make_tenant(client, operator)
    api: ApiCaller = tenant.api
    offer = published_offer(api)
    ordered = api.post(
        "/v1/subscriptions", {"customer": customer(api)["id"], "offer": offer["id"], "sim_type": "esim"}
    ).json
    assert ordered["status"] == "pending"

    # The SM-DP+ refuses a TLS client without a certificate: mutual TLS, not just HTTPS.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{settings.smdp_url}/healthz", verify=ssl.create_default_context(cafile=settings.smdp_ca_file))

    # The sandbox pool reaches the simulator over mutual TLS, then the activation runs its ES2+ calls.
    assert sandbox.load_pending_batches(rt.db, settings.smdp_url, tenant_id=tenant.id, tls=smdp_client_tls(settings))
    with Es2PlusClient.from_settings(settings) as smdp, HostNetworkClient(settings.network_url) as network:
        status = provisioning.activate_subscription(
            rt.db,
            tenant_id=tenant.id,
            subscription_id=ordered["id"],
            smdp=smdp,
            network=network,
            storage=rt.storage,
            box=SecretBox.from_setting(rt.settings.sim_key),
        )
    assert status == "active"
    line = api.get(f"/v1/subscriptions/{ordered['id']}").json
    assert line["esim"]["activation_code"].startswith(f"LPA:1${SMDP_NAME}$")

    # The subscriber's device downloads the profile: the SM-DP+ notifies us, with its certificate.
    device = httpx.post(
        f"{settings.smdp_url}/sim-admin/profiles/{line['iccid']}/download",
        json={},
        verify=platform.operator_tls(),
        timeout=30,
    )
    assert device.status_code == 200, device.text
    assert device.json()["notifications_delivered"] == [True, True]
    assert api.get(f"/v1/subscriptions/{ordered['id']}").json["esim"]["state"] == "installed"
    with rt.db.transaction(platform=True) as session:
        sim = session.scalars(select(Sim).where(Sim.iccid == line["iccid"])).one()
        events = session.scalars(select(Event.type).where(Event.object_id == sim.id).order_by(Event.id)).all()
    assert (sim.smdp_state, sim.eid is not None) == ("installed", True)
    assert list(events) == ["esim.downloaded", "esim.installed"]


def _notify(platform: Platform, cert: tuple[str, str] | None, iccid: str) -> httpx.Response:
    body = {
        "header": {"functionRequesterIdentifier": SMDP_NAME, "functionCallIdentifier": "NOTIF-X"},
        "iccid": iccid,
        "profileType": "mvne-standard",
        "timestamp": "2030-01-01T00:00:00Z",
        "notificationPointId": 4,
        "notificationPointStatus": {"status": "Failed"},
    }
    return httpx.post(
        f"{platform.base_url}{PATH}", json=body, verify=client_tls(str(platform.pki.ca.cert_file), cert), timeout=10
    )


def test_over_tls_a_caller_without_an_allowed_certificate_cannot_notify(platform: Platform, tmp_path: Path) -> None:
    with platform.rt.db.transaction(platform=True) as session:
        iccid = session.scalars(select(Sim.iccid)).first()
    iccid = iccid or "8988201000000000011"
    other = platform.pki.ca.issue("partner.mvne.test", client=True)
    impostor = TestCA(tmp_path / "impostor", name="Impostor CA").issue(SMDP_NAME, client=True)

    without = _notify(platform, None, iccid)
    not_allowed = _notify(platform, (str(other.cert_file), str(other.key_file)), iccid)

    assert without.status_code == 403
    assert without.json()["header"]["functionExecutionStatus"]["statusCodeData"]["reasonCode"] == "1.1"
    assert not_allowed.status_code == 403
    assert not_allowed.json()["header"]["functionExecutionStatus"]["statusCodeData"]["reasonCode"] == "1.2"
    # A certificate from another CA does not get past the TLS handshake.
    with pytest.raises(httpx.TransportError):
        _notify(platform, (str(impostor.cert_file), str(impostor.key_file)), iccid)
