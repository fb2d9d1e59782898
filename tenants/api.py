"""Customers and the event log of the calling tenant."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from mvne.platform.auth import require
from mvne.platform.context import db_session
from mvne.platform.pagination import PageArgs, page_schema, paginate
from mvne.tenants import service
from mvne.tenants.models import Customer, Event
from mvne.tenants.schemas import CustomerCreateSchema, CustomerSchema, EventSchema

customers = Blueprint("customers", __name__, url_prefix="/v1/customers", description="Subscriber accounts.")
events = Blueprint("events", __name__, url_prefix="/v1/events", description="The tenant's event log.")


@customers.post("")
@require("customers:write")
@customers.arguments(CustomerCreateSchema)
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
