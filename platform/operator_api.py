"""Platform operators: tenants, their API clients, dead-lettered jobs, and the host networks' usage files."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from mvne.charging.errors import UsageFileNotFound
from mvne.charging.models import UsageFile
from mvne.charging.schemas import UsageFileListArgs, UsageFileSchema
from mvne.charging.usage_files import usage_file_view
from mvne.esim.service import MAX_POOL_GROWTH, grow_profile_pool, pool_summary
from mvne.infra.errors import NotFound
from mvne.infra.fields import Integer, Text
from mvne.infra.jobs import DeadLetter, JobHealth, job_health, replay_dead_letter
from mvne.infra.web.audit import AuditEvent, AuditEventSchema
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, runtime
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.platform.auth import TENANT_SCOPES
from mvne.provisioning import network_agreements
from mvne.provisioning.actors import secret_box
from mvne.provisioning.errors import CountryNotSupported, NumberRangeExhausted
from mvne.provisioning.models import NetworkAgreement
from mvne.provisioning.onboarding import tenant_view as present_tenant
from mvne.provisioning.schemas import (
    NetworkAgreementCreateSchema,
    NetworkAgreementListArgs,
    NetworkAgreementListSchema,
    NetworkAgreementSchema,
)
from mvne.provisioning.service import onboard_tenant
from mvne.tenants import service as tenants
from mvne.tenants import standing
from mvne.tenants.errors import (
    ApiClientNotFound,
    InvalidScopes,
    TenantAlreadySuspended,
    TenantNotFound,
    TenantNotSuspended,
    TenantOffboarded,
    TenantSlugTaken,
)
from mvne.tenants.models import ApiClient, Tenant
from mvne.tenants.schemas import (
    ApiClientCreateSchema,
    ApiClientSchema,
    CredentialsSchema,
    TenantCreateSchema,
    TenantSchema,
    TenantSuspendSchema,
)

tenants_blp = Blueprint("tenants", __name__, url_prefix="/v1/tenants", description="Operators: tenants.")
operations = Blueprint(
    "operations",
    __name__,
    url_prefix="/v1/dead-letters",
    description="Operators: jobs that failed past their last retry.",
)
job_health_blp = Blueprint(
    "job_health", __name__, url_prefix="/v1/job-health", description="Operators: every job's account in the outbox."
)
api_clients_blp = Blueprint(
    "operator_api_clients",
    __name__,
    url_prefix="/v1/operator/api-clients",
    description="Operators: every API client, tenants' and operators', and their revocation.",
)

network_agreements_blp = Blueprint(
    "operator_network_agreements",
    __name__,
    url_prefix="/v1/operator/network-agreements",
    description="Operators: agreements with host networks (MNOs), which tenants choose from.",
)

audit_events_blp = Blueprint(
    "operator_audit_events",
    __name__,
    url_prefix="/v1/operator/audit-events",
    description="Operators: the audit log of every change made through the API, tenants' and operators'.",
)

usage_files_blp = Blueprint(
    "operator_usage_files",
    __name__,
    url_prefix="/v1/operator/usage-files",
    description="Operators: the host networks' usage files, their progress, counts and unreadable lines.",
)


class AuditEventArgs(PageArgs):
    tenant = Text(
        load_default=None,
        allow_none=False,
        max_length=40,
        metadata={"description": "Only the changes of this tenant's objects (a tenant id)."},
    )


@tenants_blp.post("")
@require("tenants:write", tenant=False)
@problems(TenantSlugTaken, NumberRangeExhausted, CountryNotSupported)
@tenants_blp.arguments(
    TenantCreateSchema,
    example={
        "name": "Nimbus Mobile",
        "slug": "nimbus",
        "country": "FR",
        "currency": "EUR",
        "timezone": "Europe/Paris",
        "status": "active",
    },
)
@tenants_blp.response(201, TenantSchema)
def create_tenant(body: dict[str, Any]) -> dict[str, Any]:
    """Onboard a brand: a tenant with its own number range and eSIM profile pool.

    `status` onboarding makes a sandbox tenant, which takes itself live with POST /v1/tenant/launch.
    """
    session = db_session()
    tenant = onboard_tenant(session, box=secret_box(runtime().settings), **body)
    return present_tenant(session, tenant)


@tenants_blp.get("")
@require("tenants:read", tenant=False)
@tenants_blp.arguments(PageArgs, location="query")
@tenants_blp.response(200, page_schema(TenantSchema, "TenantPage"))
def list_tenants(args: dict[str, Any]) -> dict[str, Any]:
    """List tenants, oldest first."""
    session = db_session()
    page = paginate(session, select(Tenant), Tenant.id, args)
    return {"data": [present_tenant(session, t) for t in page["data"]], "has_more": page["has_more"]}


@tenants_blp.get("/<tenant_id>")
@require("tenants:read", tenant=False)
@problems(TenantNotFound)
@tenants_blp.response(200, TenantSchema)
def get_tenant(tenant_id: str) -> dict[str, Any]:
    """One tenant with its number range and eSIM pool counts."""
    session = db_session()
    return present_tenant(session, tenants.get_tenant(session, tenant_id))


@tenants_blp.post("/<tenant_id>/api-clients")
@require("tenants:write", tenant=False)
@problems(TenantNotFound, InvalidScopes)
@tenants_blp.arguments(
    ApiClientCreateSchema, example={"name": "Nimbus back office", "scopes": ["offers:read", "customers:write"]}
)
@tenants_blp.response(201, CredentialsSchema)
def create_api_client(body: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """Issue client credentials for a tenant's back end; the secret is shown only here."""
    session = db_session()
    tenant = tenants.get_tenant(session, tenant_id)
    issued = tenants.issue_api_client(
        session, tenant_id=tenant.id, name=body["name"], scopes=body["scopes"], allowed=TENANT_SCOPES
    )
    return {
        "client_id": issued.client_id,
        "client_secret": issued.client_secret,
        "scopes": list(issued.scopes),
        "tenant_id": tenant.id,
    }


@tenants_blp.post("/<tenant_id>/suspend")
@require("tenants:write", tenant=False)
@problems(TenantNotFound, TenantAlreadySuspended, TenantOffboarded)
@tenants_blp.arguments(TenantSuspendSchema, required=False, example={"reason": "Unpaid platform fees since March."})
@tenants_blp.response(200, TenantSchema)
def suspend_tenant(body: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """Suspend a tenant: its API answers its clients 403 `tenant_suspended`; its subscribers keep service.

    Lines stay active on the network, usage files are still rated, and jobs already queued for it run.
    Its clients can still obtain tokens; every API call with them is refused until the tenant is resumed.
    """
    session = db_session()
    tenant = standing.suspend_tenant(session, tenant_id, reason=body.get("reason"))
    return present_tenant(session, tenant)


@tenants_blp.post("/<tenant_id>/resume")
@require("tenants:write", tenant=False)
@problems(TenantNotFound, TenantNotSuspended, TenantOffboarded)
@tenants_blp.response(200, TenantSchema)
def resume_tenant(tenant_id: str) -> dict[str, Any]:
    """Resume a suspended tenant: its clients' calls are served again."""
    session = db_session()
    return present_tenant(session, standing.resume_tenant(session, tenant_id))


@tenants_blp.post("/<tenant_id>/offboard")
@require("tenants:write", tenant=False)
@problems(TenantNotFound, TenantNotSuspended, TenantOffboarded)
@tenants_blp.response(202, TenantSchema)
def offboard_tenant(tenant_id: str) -> dict[str, Any]:
    """Offboard a suspended tenant: export all its data to storage, then erase it (a job; follow `status`).

    The tenant turns `offboarding`; its rows of every table and its stored objects are exported under
    `exports/tenants/{id}/` with a manifest, then erased. It ends `offboarded`, with `offboarded_at` and
    `export_location` (the manifest), its row kept as a tombstone.
    """
    session = db_session()
    return present_tenant(session, standing.request_offboarding(session, tenant_id))


class ApiClientListArgs(PageArgs):
    tenant = Text(
        load_default=None,
        allow_none=False,
        min_length=1,
        max_length=64,
        metadata={"description": "Only the clients of this tenant (its id)."},
    )


@api_clients_blp.get("")
@require("tenants:read", tenant=False)
@api_clients_blp.arguments(ApiClientListArgs, location="query")
@api_clients_blp.response(200, page_schema(ApiClientSchema, "OperatorApiClientPage"))
def list_all_api_clients(args: dict[str, Any]) -> dict[str, Any]:
    """Every API client across tenants (operators' own too), oldest first; never a secret."""
    stmt = select(ApiClient)
    if args.get("tenant") is not None:
        stmt = stmt.where(ApiClient.tenant_id == args["tenant"])
    return paginate(db_session(), stmt, ApiClient.id, args, prefix="cli")


@api_clients_blp.post("/<api_client_id>/revoke")
@require("tenants:write", tenant=False)
@problems(ApiClientNotFound)
@api_clients_blp.response(200, ApiClientSchema)
def revoke_any_api_client(api_client_id: str) -> ApiClient:
    """Revoke any client: no new tokens, and its live tokens are refused from the next request."""
    session = db_session()
    client = tenants.get_api_client(session, api_client_id, lock=True)
    return tenants.revoke_api_client(session, client, by="operator")


class PoolGrowthSchema(Schema):
    count = Integer(
        required=True,
        validate=validate.Range(1, MAX_POOL_GROWTH),
        metadata={"description": "How many eSIM profiles to add."},
    )


class EsimPoolSchema(Schema):
    tenant_id = fields.String()
    batch = fields.String(metadata={"description": "The batch of profiles just added."})
    added = fields.Integer()
    available = fields.Integer()
    reserved = fields.Integer()
    in_use = fields.Integer()


@tenants_blp.post("/<tenant_id>/esim-pool")
@require("tenants:write", tenant=False)
@problems(TenantNotFound)
@tenants_blp.arguments(PoolGrowthSchema, example={"count": 500})
@tenants_blp.response(201, EsimPoolSchema)
def grow_esim_pool(body: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """Add eSIM profiles to a tenant's pool (a sandbox SM-DP+ is loaded with them); answers the new counts."""
    session = db_session()
    batch = grow_profile_pool(
        session, tenant_id=tenant_id, count=body["count"], box=secret_box(runtime().settings), reason="operator"
    )
    pool = pool_summary(session, batch.tenant_id)
    return {
        "tenant_id": batch.tenant_id,
        "batch": batch.id,
        "added": batch.size,
        "available": pool.available,
        "reserved": pool.reserved,
        "in_use": pool.in_use,
    }


@audit_events_blp.get("")
@require("tenants:read", tenant=False)
@audit_events_blp.arguments(AuditEventArgs, location="query")
@audit_events_blp.response(200, page_schema(AuditEventSchema, "OperatorAuditEventPage"))
def list_audit_events(args: dict[str, Any]) -> dict[str, Any]:
    """Changes made through the API, oldest first, optionally of one tenant's objects; secrets never."""
    stmt = select(AuditEvent)
    if args.get("tenant") is not None:
        stmt = stmt.where(AuditEvent.tenant_id == args["tenant"])
    return paginate(db_session(), stmt, AuditEvent.id, args, prefix="aud")


@network_agreements_blp.post("")
@require("tenants:write", tenant=False)
@network_agreements_blp.arguments(
    NetworkAgreementCreateSchema,
    example={
        "name": "Orange France wholesale",
        "host_mno": "Orange France",
        "mcc": "208",
        "mnc": "01",
        "country": "FR",
        "kind": "live",
        "status": "active",
    },
)
@network_agreements_blp.response(201, NetworkAgreementSchema)
def create_network_agreement(body: dict[str, Any]) -> NetworkAgreement:
    """Record an agreement with a host network; the tenants of its country may then choose it."""
    return network_agreements.create_agreement(db_session(), **body)


@network_agreements_blp.get("")
@require("tenants:read", tenant=False)
@network_agreements_blp.arguments(NetworkAgreementListArgs, location="query")
@network_agreements_blp.response(200, NetworkAgreementListSchema)
def list_network_agreements(args: dict[str, Any]) -> dict[str, Any]:
    """Every agreement, retired ones too, optionally of one country."""
    stmt = network_agreements.agreements_query(country=args.get("country"))
    return {"data": list(db_session().scalars(stmt.order_by(NetworkAgreement.country, NetworkAgreement.id)))}


class DeadLetterSchema(Schema):
    id = fields.String()
    tenant_id = fields.String(allow_none=True)
    actor = fields.String()
    queue = fields.String()
    payload = fields.Dict()
    attempts = fields.Integer()
    error = fields.String()
    failed_at = fields.AwareDateTime()
    replayed_at = fields.AwareDateTime(allow_none=True)


@operations.get("")
@require("operations:read", tenant=False)
@operations.arguments(PageArgs, location="query")
@operations.response(200, page_schema(DeadLetterSchema, "DeadLetterPage"))
def list_dead_letters(args: dict[str, Any]) -> dict[str, Any]:
    """Jobs that failed for good, oldest first."""
    return paginate(db_session(), select(DeadLetter), DeadLetter.id, args)


@operations.post("/<dead_letter_id>/replay")
@require("operations:write", tenant=False)
@operations.response(202, DeadLetterSchema)
def replay(dead_letter_id: str) -> DeadLetter:
    """Queue a dead-lettered job again (once)."""
    letter = replay_dead_letter(db_session(), dead_letter_id)
    if letter is None:
        raise NotFound(f"No dead letter {dead_letter_id}.")
    return letter


class JobHealthSchema(Schema):
    actor = fields.String(metadata={"description": "The job's name, `<domain>.<verb_noun>`."})
    queue = fields.String()
    jobs = fields.Integer(
        metadata={"description": "Jobs asked for (outbox rows kept; finished rows are purged after 3 days)."}
    )
    sent = fields.Integer(metadata={"description": "Sends to the broker, first sends and resends."})
    resent = fields.Integer(
        metadata={"description": "Sends beyond the first: a lease ran out before the job finished."}
    )
    finished = fields.Integer()
    owed = fields.Integer(metadata={"description": "Jobs not finished yet (queued, running or waiting for a retry)."})
    overdue = fields.Integer(metadata={"description": "Owed jobs whose lease has run out: about to be sent again."})
    dead_letters = fields.Integer(metadata={"description": "Jobs failed past their last retry and not replayed."})
    oldest_owed_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "When the oldest owed job was asked for."}
    )


class JobHealthListSchema(Schema):
    data = fields.List(fields.Nested(JobHealthSchema), required=True)


@job_health_blp.get("")
@require("operations:read", tenant=False)
@job_health_blp.response(200, JobHealthListSchema)
def list_job_health() -> dict[str, list[JobHealth]]:
    """Each job's figures: asked for, sent, resent, finished, owed, overdue and dead-lettered."""
    return {"data": job_health(runtime().db)}


@usage_files_blp.get("")
@require("operations:read", tenant=False)
@usage_files_blp.arguments(UsageFileListArgs, location="query")
@usage_files_blp.response(200, page_schema(UsageFileSchema, "UsageFilePage"))
def list_usage_files(args: dict[str, Any]) -> dict[str, Any]:
    """Usage files found in storage, oldest first; filter by status (`failed` ones want a replay)."""
    stmt = select(UsageFile)
    if args.get("status"):
        stmt = stmt.where(UsageFile.status == args["status"])
    page = paginate(db_session(), stmt, UsageFile.id, args, prefix="ufl")
    return {"data": [usage_file_view(f) for f in page["data"]], "has_more": page["has_more"]}


@usage_files_blp.get("/<usage_file_id>")
@require("operations:read", tenant=False)
@problems(UsageFileNotFound)
@usage_files_blp.response(200, UsageFileSchema)
def get_usage_file(usage_file_id: str) -> dict[str, Any]:
    """A usage file: its state, segments done of all (a progress figure while it runs), its counts so far and the
    first lines that could not be rated; why it failed, when it did."""
    usage_file = db_session().get(UsageFile, usage_file_id)
    if usage_file is None:
        raise UsageFileNotFound(f"No usage file {usage_file_id}.")
    return usage_file_view(usage_file)
