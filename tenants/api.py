"""Customers, the event log and the API clients of the calling tenant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, request, url_for
from flask_smorest import Blueprint
from sqlalchemy import select

from mvne.infra.crypto import SecretBox
from mvne.infra.web.audit import AuditEvent, AuditEventSchema
from mvne.infra.web.auth import current_principal, require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants import apps as tenant_apps
from mvne.tenants import branding, legal, service, subscribers, webhooks
from mvne.tenants import settings as tenant_settings
from mvne.tenants.errors import (
    ApiClientIsPublic,
    ApiClientNotFound,
    ApiClientRevoked,
    AppNotFound,
    BrandNotFound,
    CustomerEmailTaken,
    CustomerNotFound,
    InvalidIdentifier,
    InvalidRedirectUri,
    InvalidScopes,
    LegalProfileNotFound,
    LogoNotAnImage,
    LogoNotFound,
    LogoTooLarge,
    SubscriberAccountNotFound,
)
from mvne.tenants.models import (
    PUBLIC,
    ApiClient,
    Customer,
    Event,
    SubscriberAccount,
    TenantBrand,
    WebhookDelivery,
    WebhookEndpoint,
)
from mvne.tenants.schemas import (
    ApiClientCreateSchema,
    ApiClientSchema,
    ApiClientSecretSchema,
    AppCreateSchema,
    AppSchema,
    AppUpdateSchema,
    BillingSettingsInputSchema,
    BillingSettingsSchema,
    BrandInputSchema,
    BrandSchema,
    CustomerCreateSchema,
    CustomerSchema,
    EventSchema,
    LegalProfileInputSchema,
    LegalProfileSchema,
    SecretRotationSchema,
    SubscriberAccountSchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointCreateSchema,
    WebhookEndpointSchema,
    api_client_view,
)

customers = Blueprint("customers", __name__, url_prefix="/v1/customers", description="Subscriber accounts.")
events = Blueprint("events", __name__, url_prefix="/v1/events", description="The tenant's event log.")
audit_events = Blueprint(
    "audit_events",
    __name__,
    url_prefix="/v1/audit-events",
    description="The tenant's audit log: every change made through the API, by whom, before and after.",
)
legal_profile = Blueprint(
    "legal_profile",
    __name__,
    url_prefix="/v1/tenant/legal-profile",
    description="The calling tenant's legal identity, printed on its invoices.",
)


@customers.post("")
@require("customers:write")
@problems(CustomerEmailTaken, InvalidIdentifier)
@customers.arguments(
    CustomerCreateSchema,
    example={
        "name": "Ada Martin",
        "email": "ada.martin@example.com",
        "address": {"line1": "12 rue des Lilas", "postal_code": "75011", "city": "Paris", "country": "FR"},
    },
)
@customers.response(201, CustomerSchema)
def create_customer(body: dict[str, Any]) -> Customer:
    """Open a subscriber account."""
    return service.create_customer(
        db_session(), name=body["name"], email=body["email"], address=body["address"], vat_id=body.get("vat_id")
    )


@customers.get("")
@require("customers:read")
@customers.arguments(PageArgs, location="query")
@customers.response(200, page_schema(CustomerSchema, "CustomerPage"))
def list_customers(args: dict[str, Any]) -> dict[str, Any]:
    """List subscriber accounts, oldest first."""
    return paginate(db_session(), select(Customer), Customer.id, args)


@customers.get("/<customer_id>")
@require("customers:read")
@problems(CustomerNotFound)
@customers.response(200, CustomerSchema)
def get_customer(customer_id: str) -> Customer:
    """One subscriber account."""
    return service.get_customer(db_session(), customer_id)


@customers.get("/<customer_id>/subscriber-account")
@require("customers:read")
@problems(CustomerNotFound, SubscriberAccountNotFound)
@customers.response(200, SubscriberAccountSchema)
def get_subscriber_account(customer_id: str) -> SubscriberAccount:
    """How the customer signs in to the tenant's apps (opened at their first sign-in)."""
    session = db_session()
    service.get_customer(session, customer_id)
    account = session.scalar(select(SubscriberAccount).where(SubscriberAccount.customer_id == customer_id))
    if account is None:
        raise SubscriberAccountNotFound(f"Customer {customer_id} has not signed in to an app yet.")
    return account


@customers.post("/<customer_id>/subscriber-account/disable")
@require("customers:write")
@problems(CustomerNotFound, SubscriberAccountNotFound)
@customers.response(200, SubscriberAccountSchema)
def disable_subscriber_account(customer_id: str) -> SubscriberAccount:
    """Stop the customer signing in to the tenant's apps: every sign-in ends and its tokens are refused at once.

    Their lines are not touched. Event `subscriber_account.disabled`.
    """
    session = db_session()
    service.get_customer(session, customer_id)
    return subscribers.set_account_status(session, customer_id, subscribers.DISABLED)


@customers.post("/<customer_id>/subscriber-account/enable")
@require("customers:write")
@problems(CustomerNotFound, SubscriberAccountNotFound)
@customers.response(200, SubscriberAccountSchema)
def enable_subscriber_account(customer_id: str) -> SubscriberAccount:
    """Let the customer sign in to the tenant's apps again (they sign in anew). Event `subscriber_account.enabled`."""
    session = db_session()
    service.get_customer(session, customer_id)
    return subscribers.set_account_status(session, customer_id, subscribers.ACTIVE)


@events.get("")
@require("events:read")
@events.arguments(PageArgs, location="query")
@events.response(200, page_schema(EventSchema, "EventPage"))
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's event log, oldest first."""
    return paginate(db_session(), select(Event), Event.id, args)


@audit_events.get("")
@require("audit:read")
@audit_events.arguments(PageArgs, location="query")
@audit_events.response(200, page_schema(AuditEventSchema, "AuditEventPage"))
def list_audit_events(args: dict[str, Any]) -> dict[str, Any]:
    """Changes made to the tenant's objects through the API, oldest first; secrets are never recorded."""
    stmt = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id())
    return paginate(db_session(), stmt, AuditEvent.id, args, prefix="aud")


LEGAL_PROFILE_EXAMPLE = {
    "legal_name": "Nova Mobile",
    "legal_form": "SAS",
    "address": {"line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
    "registration_number": "732829320",
    "rcs_city": "Paris",
    "share_capital": "10000.00",
    "vat_id": "FR44732829320",
    "iban": "FR1420041010050500013M02606",
    "bic": "PSSTFRPPPAR",
    "payment_terms_days": 14,
    "invoice_locale": "fr_FR",
    "support_email": "facturation@nova.example",
    "support_phone": "+33 1 23 45 67 89",
}


@legal_profile.get("")
@require("tenant:read")
@problems(LegalProfileNotFound)
@legal_profile.response(200, LegalProfileSchema)
def get_legal_profile() -> dict[str, Any]:
    """The tenant's legal profile: legal name and form, registered office, identifiers, bank details."""
    session = db_session()
    return legal.legal_profile_view(session, legal.get_legal_profile(session))


@legal_profile.put("")
@require("tenant:write")
@problems(InvalidIdentifier)
@legal_profile.arguments(LegalProfileInputSchema, example=LEGAL_PROFILE_EXAMPLE)
@legal_profile.response(200, LegalProfileSchema)
def put_legal_profile(body: dict[str, Any]) -> dict[str, Any]:
    """Set the tenant's legal profile as a whole; VAT id, SIREN/SIRET, IBAN and BIC are checked, 422 names each."""
    session = db_session()
    return legal.legal_profile_view(session, legal.set_legal_profile(session, body))


tenant_brand = Blueprint(
    "tenant_brand",
    __name__,
    url_prefix="/v1/tenant/brand",
    description="How the tenant's brand shows itself to its subscribers: name, colours, logo, support contact.",
)
billing_settings = Blueprint(
    "billing_settings",
    __name__,
    url_prefix="/v1/tenant/billing-settings",
    description="The tenant's payment terms and invoice number series.",
)

BINARY = {"type": "string", "format": "binary"}
LOGO_EXAMPLE = "(the image's bytes)"


def present_brand(brand: TenantBrand) -> dict[str, Any]:
    view = {c.key: getattr(brand, c.key) for c in TenantBrand.__table__.columns}
    view["logo_url"] = url_for("tenant_brand.get_logo", _external=True) if brand.logo_key else None
    return view


@tenant_brand.get("")
@require("tenant:read")
@problems(BrandNotFound)
@tenant_brand.response(200, BrandSchema)
def get_brand() -> dict[str, Any]:
    """The tenant's brand: display name, colours, support contact and whether a logo is uploaded."""
    return present_brand(branding.get_brand(db_session()))


@tenant_brand.put("")
@require("tenant:write")
@problems(InvalidIdentifier)
@tenant_brand.arguments(
    BrandInputSchema,
    example={
        "display_name": "Nimbus Mobile",
        "primary_color": "#1f4fd1",
        "accent_color": "#f5a623",
        "support_email": "help@nimbus.example",
        "support_phone": "+33 1 23 45 67 89",
        "support_url": "https://nimbus.example/help",
    },
)
@tenant_brand.response(200, BrandSchema)
def put_brand(body: dict[str, Any]) -> dict[str, Any]:
    """Set the brand as a whole (the logo is uploaded apart and kept); colours are #rrggbb."""
    session = db_session()
    tenant = service.get_tenant(session, tenant_id())
    return present_brand(branding.set_brand(session, tenant, body))


@tenant_brand.put("/logo")
@require("tenant:write")
@problems(LogoNotAnImage, LogoTooLarge)
@tenant_brand.doc(
    requestBody={
        "required": True,
        "description": "The image itself (not JSON): PNG, JPEG or WebP, at most 512 KiB.",
        "content": {content_type: {"schema": BINARY, "example": LOGO_EXAMPLE} for content_type in branding.LOGO_TYPES},
    }
)
@tenant_brand.response(200, BrandSchema)
def put_logo() -> dict[str, Any]:
    """Upload the logo: the image's bytes as the body, with its Content-Type.

    PNG, JPEG or WebP of at most 512 KiB; the bytes must be the image the Content-Type names (SVG and
    anything else is 422 `logo_not_an_image`, a larger image 413 `logo_too_large`).
    """
    session = db_session()
    tenant = service.get_tenant(session, tenant_id())
    data = request.get_data(cache=False)
    brand = branding.store_logo(session, runtime().storage, tenant, data, request.content_type or "")
    return present_brand(brand)


@tenant_brand.get("/logo")
@require("tenant:read")
@problems(LogoNotFound)
@tenant_brand.response(200, BINARY, content_type="image/png")
@tenant_brand.doc(
    responses={"200": {"content": {content_type: {"schema": BINARY} for content_type in branding.LOGO_TYPES}}}
)
def get_logo() -> Response:
    """The logo's bytes, with their content type."""
    data, content_type = branding.read_logo(db_session(), runtime().storage)
    return Response(data, mimetype=content_type, headers={"Cache-Control": "private, max-age=300"})


@billing_settings.get("")
@require("tenant:read")
@billing_settings.response(200, BillingSettingsSchema)
def get_billing_settings() -> dict[str, Any]:
    """The payment terms and the invoice series (INV- until the tenant chooses its own)."""
    return tenant_settings.billing_view(db_session())


@billing_settings.put("")
@require("tenant:write")
@billing_settings.arguments(BillingSettingsInputSchema, example={"payment_terms_days": 30, "invoice_series": "NIM-"})
@billing_settings.response(200, BillingSettingsSchema)
def put_billing_settings(body: dict[str, Any]) -> dict[str, Any]:
    """Set the payment terms (also shown by the legal profile) and the invoice series of invoices to come."""
    return tenant_settings.set_billing(
        db_session(), payment_terms_days=body["payment_terms_days"], invoice_series=body["invoice_series"]
    )


webhook_endpoints = Blueprint(
    "webhook_endpoints",
    __name__,
    url_prefix="/v1/webhook-endpoints",
    description="Where the tenant's events are POSTed, signed with HMAC-SHA256.",
)
webhook_deliveries = Blueprint(
    "webhook_deliveries", __name__, url_prefix="/v1/webhook-deliveries", description="Attempts to send an event."
)


@webhook_endpoints.post("")
@require("webhooks:write")
@problems(webhooks.InvalidWebhookUrl)
@webhook_endpoints.arguments(
    WebhookEndpointCreateSchema,
    example={"url": "https://hooks.example.com/mvne", "event_types": ["subscription.activated", "invoice.issued"]},
)
@webhook_endpoints.response(201, WebhookEndpointCreatedSchema)
def create_webhook_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    """Register an endpoint; the signing secret is in this response only."""
    settings = runtime().settings
    created = webhooks.create_endpoint(
        db_session(),
        tenant_id=tenant_id(),
        url=body["url"],
        event_types=body["event_types"],
        box=SecretBox.from_setting(settings.sim_key),
        allow_private=settings.webhook_allow_private,
    )
    endpoint = created.endpoint
    view = {k: getattr(endpoint, k) for k in ("id", "url", "event_types", "status", "created_at")}
    return {**view, "secret": created.secret}


@webhook_endpoints.get("")
@require("webhooks:read")
@webhook_endpoints.arguments(PageArgs, location="query")
@webhook_endpoints.response(200, page_schema(WebhookEndpointSchema, "WebhookEndpointPage"))
def list_webhook_endpoints(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's endpoints, oldest first."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.status != "deleted")
    return paginate(db_session(), stmt, WebhookEndpoint.id, args)


@webhook_endpoints.get("/<webhook_endpoint_id>")
@require("webhooks:read")
@problems(webhooks.WebhookEndpointNotFound)
@webhook_endpoints.response(200, WebhookEndpointSchema)
def get_webhook_endpoint(webhook_endpoint_id: str) -> WebhookEndpoint:
    """One endpoint."""
    return webhooks.get_endpoint(db_session(), webhook_endpoint_id)


@webhook_endpoints.delete("/<webhook_endpoint_id>")
@require("webhooks:write")
@problems(webhooks.WebhookEndpointNotFound)
@webhook_endpoints.response(204)
def delete_webhook_endpoint(webhook_endpoint_id: str) -> None:
    """Stop sending events to an endpoint; its deliveries stay readable."""
    webhooks.delete_endpoint(db_session(), webhook_endpoint_id)


@webhook_endpoints.get("/<webhook_endpoint_id>/deliveries")
@require("webhooks:read")
@problems(webhooks.WebhookEndpointNotFound)
@webhook_endpoints.arguments(PageArgs, location="query")
@webhook_endpoints.response(200, page_schema(WebhookDeliverySchema, "WebhookDeliveryPage"))
def list_webhook_deliveries(args: dict[str, Any], webhook_endpoint_id: str) -> dict[str, Any]:
    """Deliveries to an endpoint, oldest first, with their attempts and last outcome."""
    session = db_session()
    webhooks.get_endpoint(session, webhook_endpoint_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == webhook_endpoint_id)
    return paginate(session, stmt, WebhookDelivery.id, args)


@webhook_deliveries.post("/<webhook_delivery_id>/replay")
@require("webhooks:write")
@problems(webhooks.WebhookDeliveryNotFound, webhooks.WebhookEndpointNotFound)
@webhook_deliveries.response(202, WebhookDeliverySchema)
def replay_webhook_delivery(webhook_delivery_id: str) -> WebhookDelivery:
    """Send a delivery again with a fresh set of attempts."""
    return webhooks.replay_delivery(db_session(), tenant_id(), webhook_delivery_id)


api_clients = Blueprint(
    "api_clients",
    __name__,
    url_prefix="/v1/api-clients",
    description="The tenant's own API clients (OAuth2 client credentials): create, rotate secrets, revoke.",
)


@api_clients.get("")
@require("api_clients:read")
@api_clients.arguments(PageArgs, location="query")
@api_clients.response(200, page_schema(ApiClientSchema, "ApiClientPage"))
def list_api_clients(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's API clients, oldest first, revoked ones included; never a secret."""
    stmt = select(ApiClient).where(ApiClient.tenant_id == tenant_id())
    return paginate(db_session(), stmt, ApiClient.id, args, prefix="cli")


@api_clients.post("")
@require("api_clients:write")
@problems(InvalidScopes)
@api_clients.arguments(
    ApiClientCreateSchema, example={"name": "Billing back end", "scopes": ["customers:read", "invoices:read"]}
)
@api_clients.response(201, ApiClientSecretSchema)
def create_api_client(body: dict[str, Any]) -> dict[str, Any]:
    """Create a client with scopes the calling token holds itself; its secret is in this response only."""
    session = db_session()
    issued = service.issue_api_client(
        session,
        tenant_id=tenant_id(),
        name=body["name"],
        scopes=body["scopes"],
        allowed=tuple(sorted(current_principal().scopes)),
    )
    client = service.get_tenant_api_client(session, tenant_id(), issued.client_id)
    return {**api_client_view(client), "client_secret": issued.client_secret}


@api_clients.get("/<api_client_id>")
@require("api_clients:read")
@problems(ApiClientNotFound)
@api_clients.response(200, ApiClientSchema)
def get_api_client(api_client_id: str) -> ApiClient:
    """One of the tenant's API clients."""
    return service.get_tenant_api_client(db_session(), tenant_id(), api_client_id)


@api_clients.post("/<api_client_id>/rotate-secret")
@require("api_clients:write")
@problems(ApiClientNotFound, ApiClientRevoked, ApiClientIsPublic)
@api_clients.arguments(SecretRotationSchema, example={"overlap_seconds": 3600})
@api_clients.response(200, ApiClientSecretSchema)
def rotate_api_client_secret(body: dict[str, Any], api_client_id: str) -> dict[str, Any]:
    """Give a client a new secret, shown in this response only; the one before keeps working for the overlap."""
    session = db_session()
    client = service.get_tenant_api_client(session, tenant_id(), api_client_id, lock=True)
    rotated = service.rotate_api_client_secret(session, client, overlap=dt.timedelta(seconds=body["overlap_seconds"]))
    return {**api_client_view(rotated.client), "client_secret": rotated.client_secret}


@api_clients.post("/<api_client_id>/revoke")
@require("api_clients:write")
@problems(ApiClientNotFound)
@api_clients.response(200, ApiClientSchema)
def revoke_api_client(api_client_id: str) -> ApiClient:
    """Revoke a client: it gets no new token, and its live tokens are refused from the next request.

    A client may revoke itself: the owner's call; the token that asked stops working right after.
    Revoking a revoked client changes nothing.
    """
    session = db_session()
    client = service.get_tenant_api_client(session, tenant_id(), api_client_id, lock=True)
    return service.revoke_api_client(session, client, by="tenant")


apps = Blueprint(
    "apps",
    __name__,
    url_prefix="/v1/apps",
    description="The tenant's apps: public OAuth clients its subscribers sign in through (authorization code "
    "with PKCE, no secret). Revoke one with POST /v1/api-clients/{id}/revoke.",
)
APP_EXAMPLE = {"name": "Nimbus Mobile", "redirect_uris": ["com.nimbus.app:/callback", "https://my.nimbus.example/cb"]}


@apps.post("")
@require("api_clients:write")
@problems(InvalidRedirectUri)
@apps.arguments(AppCreateSchema, example=APP_EXAMPLE)
@apps.response(201, AppSchema)
def create_app(body: dict[str, Any]) -> ApiClient:
    """Register an app; its `client_id` and the server's metadata (/.well-known/oauth-authorization-server) are all
    an OAuth library needs. A redirect URI that cannot be one is answered 422 `invalid_redirect_uri`, naming it."""
    return tenant_apps.create_app(
        db_session(), tenant_id=tenant_id(), name=body["name"], redirect_uris=body["redirect_uris"]
    )


@apps.get("")
@require("api_clients:read")
@apps.arguments(PageArgs, location="query")
@apps.response(200, page_schema(AppSchema, "AppPage"))
def list_apps(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's apps, oldest first, revoked ones included."""
    stmt = select(ApiClient).where(ApiClient.tenant_id == tenant_id(), ApiClient.kind == PUBLIC)
    return paginate(db_session(), stmt, ApiClient.id, args, prefix="cli")


@apps.get("/<app_id>")
@require("api_clients:read")
@problems(AppNotFound)
@apps.response(200, AppSchema)
def get_app(app_id: str) -> ApiClient:
    """One of the tenant's apps."""
    return tenant_apps.get_app(db_session(), tenant_id(), app_id)


@apps.patch("/<app_id>")
@require("api_clients:write")
@problems(AppNotFound, InvalidRedirectUri, ApiClientRevoked)
@apps.arguments(AppUpdateSchema, example={"redirect_uris": ["com.nimbus.app:/callback"]})
@apps.response(200, AppSchema)
def update_app(body: dict[str, Any], app_id: str) -> ApiClient:
    """Rename an app or replace its redirect URIs (the whole list); sign-ins under way keep the URI they began with."""
    session = db_session()
    app = tenant_apps.get_app(session, tenant_id(), app_id, lock=True)
    return tenant_apps.update_app(session, app, name=body.get("name"), redirect_uris=body.get("redirect_uris"))
