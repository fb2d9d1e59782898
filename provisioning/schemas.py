"""The HTTP shapes of subscriptions."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mvne.infra.fields import Country, Text
from mvne.infra.web.pagination import PageArgs
from mvne.provisioning.sandbox import SCENARIOS


class SubscriptionCreateSchema(Schema):
    customer = Text(required=True, min_length=1, max_length=64, metadata={"example": "cus_01J..."})
    offer = Text(required=True, min_length=1, max_length=64, metadata={"example": "off_01J..."})
    sim_type = Text(required=True, max_length=16, validate=validate.OneOf(("esim",)))
    test_scenario = Text(
        max_length=32,
        validate=validate.OneOf(SCENARIOS),
        metadata={
            "description": "Sandbox tenants only (422 sandbox_only for a live one): the outcome the simulators "
            "give the line; see GET /v1/sandbox/test-numbers."
        },
    )
    promotion_code = Text(
        min_length=1, max_length=64, metadata={"description": "A promotion's code: a discount on the line's fee."}
    )


class EsimSchema(Schema):
    iccid = fields.String()
    state = fields.String(allow_none=True)
    activation_code = fields.String(allow_none=True, metadata={"description": "LPA:1$<SM-DP+ address>$<matching id>"})
    matching_id = fields.String(allow_none=True)
    qr_code_url = fields.String(allow_none=True)


class SubscriptionSchema(Schema):
    id = fields.String()
    customer = fields.String(attribute="customer_id")
    offer = fields.String(attribute="offer_id")
    sim_type = fields.String()
    status = fields.String()
    msisdn = fields.String(allow_none=True)
    iccid = fields.String(allow_none=True)
    esim = fields.Nested(EsimSchema, allow_none=True)
    failure_code = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    test_scenario = fields.String(allow_none=True, metadata={"description": "The sandbox test scenario, if any."})
    created_at = fields.AwareDateTime()
    activated_at = fields.AwareDateTime(allow_none=True)


class SubscriptionListArgs(PageArgs):
    customer = Text(load_default=None, allow_none=False, min_length=1, max_length=64)
    status = Text(load_default=None, allow_none=False, min_length=1, max_length=32)


class OnboardingStepSchema(Schema):
    step = fields.String(
        metadata={"enum": ["brand", "legal_profile", "market", "host_network", "number_range", "billing", "offer"]}
    )
    done = fields.Boolean()
    missing = fields.List(
        fields.String(), metadata={"description": "Field names, or a sentence per missing thing; empty when done."}
    )
    how = fields.String(metadata={"description": "The call that completes the step."})
    details = fields.Dict(
        keys=fields.String(),
        metadata={"description": "What the step holds so far: the number range, the chosen agreement, ..."},
    )


class OnboardingSchema(Schema):
    status = fields.String(metadata={"description": "The tenant's status: onboarding until it launches."})
    ready_to_launch = fields.Boolean(
        metadata={"description": "True when the tenant is onboarding and every step is done: POST /v1/tenant/launch."}
    )
    launched_at = fields.AwareDateTime(allow_none=True)
    steps = fields.List(fields.Nested(OnboardingStepSchema))


MCC = r"^[0-9]{3}$"
MNC = r"^[0-9]{2,3}$"


class NetworkAgreementCreateSchema(Schema):
    name = Text(required=True, min_length=1, max_length=200, metadata={"example": "Orange France wholesale"})
    host_mno = Text(required=True, min_length=1, max_length=200, metadata={"example": "Orange France"})
    mcc = Text(required=True, min_length=3, max_length=3, pattern=MCC, pattern_error="3 digits, such as 208.")
    mnc = Text(required=True, min_length=2, max_length=3, pattern=MNC, pattern_error="2 or 3 digits, such as 01.")
    country = Country(required=True)
    kind = Text(
        required=True,
        max_length=20,
        validate=validate.OneOf(("simulated", "live")),
        metadata={"description": "simulated: the platform's network simulator; live: a real MNO's network."},
    )
    status = Text(
        load_default="active",
        max_length=20,
        validate=validate.OneOf(("active", "retired")),
        metadata={"description": "active: tenants may choose it; retired: offered to no new tenant."},
    )


class NetworkAgreementSchema(Schema):
    id = fields.String()
    name = fields.String()
    host_mno = fields.String()
    mcc = fields.String()
    mnc = fields.String()
    country = fields.String()
    kind = fields.String(metadata={"enum": ["simulated", "live"]})
    status = fields.String(metadata={"enum": ["active", "retired"]})
    created_at = fields.AwareDateTime()


class NetworkAgreementListSchema(Schema):
    data = fields.List(fields.Nested(NetworkAgreementSchema), required=True)


class NetworkAgreementListArgs(Schema):
    country = Country(load_default=None, allow_none=False, metadata={"description": "Only this country's."})


class HostNetworkInputSchema(Schema):
    agreement_id = Text(
        required=True,
        min_length=1,
        max_length=40,
        metadata={"description": "One of GET /v1/network-agreements.", "example": "nag_sim_fr"},
    )


class HostNetworkSchema(Schema):
    agreement_id = fields.String(allow_none=True)
    agreement = fields.Nested(NetworkAgreementSchema, allow_none=True)
    lines_run_on = fields.String(
        metadata={"description": "The network the tenant's lines are provisioned on now.", "enum": ["simulated"]}
    )
    note = fields.String()


class NumberSpanSchema(Schema):
    first = fields.String()
    last = fields.String()
    size = fields.Integer()


class SandboxScenarioSchema(Schema):
    name = fields.String(metadata={"description": "The value of test_scenario in POST /v1/subscriptions."})
    behaviour = fields.String()
    outcome = fields.String()
    msisdns = fields.Nested(NumberSpanSchema, allow_none=True, metadata={"description": "The numbers it draws from."})
    device_eid = fields.String(allow_none=True, metadata={"description": "The test device its eSIM is ordered for."})


class SandboxDeviceSchema(Schema):
    eid = fields.String()
    behaviour = fields.String()


class SandboxSchema(Schema):
    sandbox = fields.Boolean(metadata={"description": "True while the tenant is onboarding: test scenarios work."})
    test_msisdns = fields.Nested(
        NumberSpanSchema,
        allow_none=True,
        metadata={
            "description": "The tenant's test numbers: never given to ordinary lines, refused by the "
            "simulated host network."
        },
    )
    test_devices = fields.List(fields.Nested(SandboxDeviceSchema))
    scenarios = fields.List(fields.Nested(SandboxScenarioSchema))
    device_download = fields.String(
        metadata={"description": "How to play the subscriber's phone downloading a sandbox eSIM."}
    )
