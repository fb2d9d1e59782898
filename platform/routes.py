"""Every API blueprint, registered in one place."""

from __future__ import annotations

from flask_smorest import Api


def register_api(api: Api) -> None:
    from mvne.catalog.api import offers
    from mvne.charging.api import billing_runs, customer_billing, invoices, line_usage, usage_records
    from mvne.platform.me_api import me
    from mvne.platform.operator_api import api_clients_blp, audit_events_blp, job_health_blp, operations, tenants_blp
    from mvne.provisioning.api import subscriptions
    from mvne.tenants.api import (
        api_clients,
        apps,
        audit_events,
        customers,
        events,
        legal_profile,
        webhook_deliveries,
        webhook_endpoints,
    )

    for blueprint in (
        tenants_blp,
        operations,
        job_health_blp,
        api_clients_blp,
        audit_events_blp,
        offers,
        customers,
        customer_billing,
        subscriptions,
        usage_records,
        line_usage,
        billing_runs,
        invoices,
        events,
        audit_events,
        webhook_endpoints,
        webhook_deliveries,
        api_clients,
        apps,
        legal_profile,
        me,
    ):
        api.register_blueprint(blueprint)
