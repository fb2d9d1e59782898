"""Customers and the event log of the calling tenant."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from mvne.infra.crypto import SecretBox
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants import service, webhooks
from mvne.tenants.errors import CustomerEmailTaken, CustomerNotFound
from mvne.tenants.models import Customer, Event, WebhookDelivery, WebhookEndpoint
from mvne.tenants.schemas import (
    CustomerCreateSchema,
    CustomerSchema,
    EventSchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointCreateSchema,
    WebhookEndpointSchema,
)

customers = Blueprint("customers", __name__, url_prefix="/v1/customers", description="Subscriber accounts.")
events = Blueprint("events", __name__, url_prefix="/v1/events", description="The tenant's event log.")


@customers.post("")
@require("customers:write")
@problems(CustomerEmailTaken)
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
    return service.create_customer(db_session(), name=body["name"], email=body["email"], address=body["address"])


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


@events.get("")
@require("events:read")
@events.arguments(PageArgs, location="query")
@events.response(200, page_schema(EventSchema, "EventPage"))
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's event log, oldest first."""
    return paginate(db_session(), select(Event), Event.id, args)


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
