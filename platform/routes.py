"""Every API blueprint, registered in one place."""

from __future__ import annotations

from flask_smorest import Api


def register_api(api: Api) -> None:
    from mvne.catalog.api import offers, promotions
    from mvne.charging.api import (
        billing_runs,
        customer_billing,
        invoices,
        line_usage,
        rerating_runs,
        tenant_market,
        usage_records,
        usage_rejections,
        voucher_batches,
    )
    from mvne.charging.carrier_api import carrier_billing_policy, carrier_charges, line_carrier_billing, merchants
    from mvne.charging.catalog_api import line_purchases, public_catalog
    from mvne.charging.ratecard_api import rate_cards
    from mvne.platform.me_api import me
    from mvne.platform.operator_api import (
        api_clients_blp,
        audit_events_blp,
        job_health_blp,
        network_agreements_blp,
        operations,
        tenants_blp,
        usage_files_blp,
    )
    from mvne.platform.signup_api import signup_blp
    from mvne.provisioning.api import subscriptions
    from mvne.provisioning.onboarding_api import (
        agreements_blp,
        host_network_blp,
        launch_blp,
        onboarding_blp,
        sandbox_blp,
    )
    from mvne.tenants.api import (
        api_clients,
        apps,
        audit_events,
        billing_settings,
        customers,
        events,
        legal_profile,
        tenant_brand,
        webhook_deliveries,
        webhook_endpoints,
    )
    from mvne.tenants.staff_api import console, staff_blp

    for blueprint in (
        tenants_blp,
        operations,
        job_health_blp,
        api_clients_blp,
        audit_events_blp,
        usage_files_blp,
        offers,
        promotions,
        public_catalog,
        rate_cards,
        customers,
        customer_billing,
        subscriptions,
        line_purchases,
        usage_records,
        usage_rejections,
        line_usage,
        rerating_runs,
        voucher_batches,
        billing_runs,
        invoices,
        events,
        audit_events,
        webhook_endpoints,
        webhook_deliveries,
        api_clients,
        apps,
        legal_profile,
        signup_blp,
        console,
        staff_blp,
        tenant_brand,
        tenant_market,
        billing_settings,
        network_agreements_blp,
        agreements_blp,
        host_network_blp,
        onboarding_blp,
        launch_blp,
        sandbox_blp,
        me,
        carrier_billing_policy,
        line_carrier_billing,
        merchants,
        carrier_charges,
    ):
        api.register_blueprint(blueprint)
