"""Only an authenticated SM-DP+ may notify us (HandleDownloadProgressInfo), and only about profiles we ordered.

The app here is configured with the SM-DP+'s CA, the subjects allowed to notify and a trusted proxy;
its client certificate reaches the endpoint through the proxy's header or the TLS connection itself.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mvne.esim.identifiers import make_iccid
from mvne.esim.models import Sim
from mvne.esim.tls import NotifierAuth, NotifierRefused
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings, SettingsError
from mvne.platform.app import create_app
from mvne.tenants.models import Event
from tests.support.api import TenantHandle
from tests.support.certs import EsPlusPki, TestCA, es2plus_pki
from tests.support.runtimes import side_runtime

PATH = "/gsma/rsp2/es2plus/handleDownloadProgressInfo"
PROXY = "10.20.30.40"
SMDP_NAME = "smdp.sim.mvne.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> EsPlusPki:
    return es2plus_pki(tmp_path_factory.mktemp("pki"), smdp_name=SMDP_NAME)


@pytest.fixture(scope="module")
def mtls_settings(settings: Settings, pki: EsPlusPki) -> Settings:
    return settings.with_overrides(
        smdp_ca_file=str(pki.ca.cert_file),
        smdp_allowed_subjects=(SMDP_NAME,),
        smdp_trusted_proxies=(f"{PROXY}/32",),
        embedded_simulators=False,
    )


@pytest.fixture(scope="module")
def mtls_app(mtls_settings: Settings, runtime: Runtime) -> Iterator[Flask]:
    with side_runtime(mtls_settings) as rt:
        yield create_app(rt=rt)


@pytest.fixture
def client(mtls_app: Flask) -> FlaskClient:
    return mtls_app.test_client()


def ordered_sim(runtime: Runtime, tenant: TenantHandle, state: str | None = "released") -> Sim:
    """One of the tenant's profiles, as if ordered and released at the SM-DP+ (or never ordered)."""
    with runtime.db.transaction(platform=True) as session:
        sim = session.scalars(
            select(Sim).where(Sim.tenant_id == tenant.id, Sim.status == "available").order_by(Sim.iccid)
        ).first()
        assert sim is not None
        if state is not None:
            sim.status, sim.smdp_state = "in_use", state
        session.flush()
        session.expunge(sim)
        return sim


def notification(settings: Settings, sim: Sim, point: int = 4, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "header": {"functionRequesterIdentifier": settings.smdp_address, "functionCallIdentifier": "NOTIF-1"},
        "iccid": sim.iccid,
        "profileType": sim.profile_type,
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notificationPointId": point,
        "notificationPointStatus": {"status": "Executed-Success"},
    }
    body.update(changes)
    return body


def smdp_state(runtime: Runtime, iccid: str) -> str | None:
    with runtime.db.transaction(platform=True) as session:
        return session.scalar(select(Sim.smdp_state).where(Sim.iccid == iccid))


def events_of(runtime: Runtime, sim_id: str) -> list[str]:
    with runtime.db.transaction(platform=True) as session:
        return list(session.scalars(select(Event.type).where(Event.object_id == sim_id).order_by(Event.id)))


def status_code_data(response: Any) -> tuple[int, str, str, str]:
    execution = response.json["header"]["functionExecutionStatus"]
    data = execution["statusCodeData"]
    return response.status_code, execution["status"], data["subjectCode"], data["reasonCode"]


def forwarded(pem: str) -> dict[str, str]:
    """The header nginx sets from `$ssl_client_escaped_cert`."""
    return {"X-Client-Cert": urllib.parse.quote(pem)}


def test_a_notification_forwarded_by_the_trusted_proxy_with_an_allowed_certificate_is_applied(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim),
        headers=forwarded(pki.smdp.pem),
        environ_base={"REMOTE_ADDR": PROXY},
    )

    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert response.headers["X-Admin-Protocol"].startswith("gsma/rsp/v2.")
    assert smdp_state(runtime, sim.iccid) == "installed"
    assert events_of(runtime, sim.id) == ["esim.installed"]


def test_the_certificate_header_from_an_address_that_is_not_a_trusted_proxy_is_ignored(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim, notificationPointStatus={"status": "Failed"}),
        headers={**forwarded(pki.smdp.pem), "X-Forwarded-For": PROXY},
        environ_base={"REMOTE_ADDR": "10.20.30.41"},
    )

    assert status_code_data(response) == (403, "Failed", "1.1", "1.1")
    assert "no client certificate" in response.json["header"]["functionExecutionStatus"]["statusCodeData"]["message"]
    assert smdp_state(runtime, sim.iccid) == "released"
    assert events_of(runtime, sim.id) == []


def test_a_certificate_from_another_ca_is_refused(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, tmp_path: Path
) -> None:
    sim = ordered_sim(runtime, tenant)
    impostor = TestCA(tmp_path, name="Impostor CA").issue(SMDP_NAME, client=True)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim, notificationPointStatus={"status": "Failed"}),
        headers=forwarded(impostor.pem),
        environ_base={"REMOTE_ADDR": PROXY},
    )

    assert status_code_data(response) == (403, "Failed", "1.1", "1.1")
    assert smdp_state(runtime, sim.iccid) == "released"


def test_a_certificate_of_the_ca_whose_subject_is_not_allowed_is_refused(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)
    other = pki.ca.issue("another-partner.example", client=True)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim, notificationPointStatus={"status": "Failed"}),
        headers=forwarded(other.pem),
        environ_base={"REMOTE_ADDR": PROXY},
    )

    assert status_code_data(response) == (403, "Failed", "1.1", "1.2")
    assert smdp_state(runtime, sim.iccid) == "released"


def test_a_notification_without_any_certificate_is_refused(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle
) -> None:
    sim = ordered_sim(runtime, tenant)

    for remote in (PROXY, "127.0.0.1"):
        response = client.post(PATH, json=notification(mtls_settings, sim), environ_base={"REMOTE_ADDR": remote})
        assert status_code_data(response) == (403, "Failed", "1.1", "1.1")
    assert smdp_state(runtime, sim.iccid) == "released"


def test_a_server_certificate_without_client_use_is_refused(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)
    server_only = pki.ca.issue("server-only.sim.mvne.test", server=True)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim),
        headers=forwarded(server_only.pem),
        environ_base={"REMOTE_ADDR": PROXY},
    )

    assert status_code_data(response) == (403, "Failed", "1.1", "1.1")


def test_the_peer_certificate_of_a_direct_tls_connection_authenticates(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)

    # What werkzeug's TLS server (and mod_wsgi) put in the environment for the verified peer.
    response = client.post(
        PATH, json=notification(mtls_settings, sim, point=3), environ_base={"SSL_CLIENT_CERT": pki.smdp.pem}
    )

    assert response.status_code == 204, response.get_data(as_text=True)
    assert smdp_state(runtime, sim.iccid) == "downloaded"
    assert events_of(runtime, sim.id) == ["esim.downloaded"]


def test_an_unknown_iccid_is_refused_with_8_2_1_and_3_9(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)
    body = notification(mtls_settings, sim, iccid=make_iccid("8988201", 99_999_999_999))

    response = client.post(PATH, json=body, environ_base={"SSL_CLIENT_CERT": pki.smdp.pem})

    assert status_code_data(response) == (404, "Failed", "8.2.1", "3.9")
    assert smdp_state(runtime, sim.iccid) == "released"


def test_a_profile_never_ordered_from_the_smdp_is_refused_and_left_alone(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant, state=None)

    response = client.post(
        PATH,
        json=notification(mtls_settings, sim, notificationPointStatus={"status": "Failed"}),
        environ_base={"SSL_CLIENT_CERT": pki.smdp.pem},
    )

    assert status_code_data(response) == (409, "Failed", "8.2.1", "1.2")
    assert smdp_state(runtime, sim.iccid) is None
    assert events_of(runtime, sim.id) == []


def test_a_notification_that_disagrees_with_the_profile_is_refused(
    client: FlaskClient, mtls_settings: Settings, runtime: Runtime, tenant: TenantHandle, pki: EsPlusPki
) -> None:
    sim = ordered_sim(runtime, tenant)
    cert = {"SSL_CLIENT_CERT": pki.smdp.pem}

    wrong_type = client.post(PATH, json=notification(mtls_settings, sim, profileType="other"), environ_base=cert)
    wrong_requester = client.post(
        PATH,
        json=notification(
            mtls_settings,
            sim,
            header={"functionRequesterIdentifier": "smdp.elsewhere.example", "functionCallIdentifier": "N-2"},
        ),
        environ_base=cert,
    )

    assert status_code_data(wrong_type) == (409, "Failed", "8.2.5", "3.8")
    assert status_code_data(wrong_requester) == (403, "Failed", "1.1", "1.1")
    assert smdp_state(runtime, sim.iccid) == "released"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"notificationPointId": "four"}, ("1.6", "2.1")),
        ({"timestamp": None}, ("1.6", "2.2")),
    ],
)
def test_a_malformed_notification_gets_an_es2plus_format_failure(
    *,
    client: FlaskClient,
    mtls_settings: Settings,
    runtime: Runtime,
    tenant: TenantHandle,
    pki: EsPlusPki,
    change: dict[str, Any],
    code: tuple[str, str],
) -> None:
    sim = ordered_sim(runtime, tenant)
    body = {k: v for k, v in notification(mtls_settings, sim, **change).items() if v is not None}

    response = client.post(PATH, json=body, environ_base={"SSL_CLIENT_CERT": pki.smdp.pem})

    assert status_code_data(response) == (400, "Failed", *code)
    not_an_object = client.post(PATH, json=[body], environ_base={"SSL_CLIENT_CERT": pki.smdp.pem})
    assert status_code_data(not_an_object) == (400, "Failed", "1.3.1", "2.1")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b'{"header": ', 400),  # not JSON
        (b"[" * 500 + b"]" * 500, 422),  # nested past the bound
        (b'{"iccid": "89\\u0000"}', 422),  # a NUL in a string
    ],
)
def test_a_body_the_web_kit_refuses_still_gets_an_es2plus_failure_not_a_problem(
    client: FlaskClient, pki: EsPlusPki, data: bytes, status: int
) -> None:
    response = client.post(
        PATH, data=data, content_type="application/json", environ_base={"SSL_CLIENT_CERT": pki.smdp.pem}
    )

    assert response.mimetype == "application/json"
    assert status_code_data(response) == (status, "Failed", "1.3.1", "2.1")


def test_without_a_ca_the_embedded_endpoint_keeps_taking_notifications_as_before(
    api: Any, settings: Settings, runtime: Runtime, tenant: TenantHandle
) -> None:
    sim = ordered_sim(runtime, tenant)

    response = api.client.post(PATH, json=notification(settings, sim, point=3))
    unknown = api.client.post(PATH, json=notification(settings, sim, profileType="other"))

    assert response.status_code == 204
    assert smdp_state(runtime, sim.iccid) == "downloaded"
    assert status_code_data(unknown) == (409, "Failed", "8.2.5", "3.8")


def test_subjects_match_by_common_name_or_by_full_subject_in_any_attribute_order(pki: EsPlusPki) -> None:
    def allowed(*subjects: str) -> bool:
        auth = NotifierAuth(ca_certs=[pki.ca.cert], allowed_subjects=subjects)
        try:
            auth.authenticate({"SSL_CLIENT_CERT": pki.smdp.pem})
        except NotifierRefused:
            return False
        return True

    assert pki.smdp.subject == f"CN={SMDP_NAME},O=MVNE Tests"
    assert allowed(SMDP_NAME)
    assert allowed(f"CN={SMDP_NAME},O=MVNE Tests")
    assert allowed(f"O=MVNE Tests,CN={SMDP_NAME}")
    assert allowed()  # no list: any certificate of the CA
    assert not allowed("smdp.other.test")
    assert not allowed(f"CN={SMDP_NAME},O=Someone Else")
    assert not allowed(f"CN={SMDP_NAME}")  # a full subject must match whole


def test_an_ipv4_mapped_proxy_address_is_recognised_and_other_networks_are_not(pki: EsPlusPki) -> None:
    auth = NotifierAuth(ca_certs=[pki.ca.cert], trusted_proxies=("10.0.0.0/8",))
    header = urllib.parse.quote(pki.smdp.pem)

    assert auth.authenticate({"REMOTE_ADDR": "::ffff:10.1.2.3", "HTTP_X_CLIENT_CERT": header}).via_proxy
    with pytest.raises(NotifierRefused):
        auth.authenticate({"REMOTE_ADDR": "192.168.1.1", "HTTP_X_CLIENT_CERT": header})
    # Behind the proxy, only its header counts: a stray peer certificate is not taken instead.
    with pytest.raises(NotifierRefused):
        auth.authenticate({"REMOTE_ADDR": "10.1.2.3", "SSL_CLIENT_CERT": pki.smdp.pem})


def test_an_unreadable_ca_file_stops_the_app_from_starting(settings: Settings, tmp_path: Path) -> None:
    missing = settings.with_overrides(smdp_ca_file=str(tmp_path / "nowhere.pem"), embedded_simulators=False)
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")

    for broken in (missing, settings.with_overrides(smdp_ca_file=str(empty), embedded_simulators=False)):
        with side_runtime(broken) as rt, pytest.raises(SettingsError) as refused:
            create_app(rt=rt)
        assert str(refused.value).startswith("MVNE_SMDP_CA_FILE:")
