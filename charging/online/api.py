"""Nchf_ConvergedCharging (3GPP TS 32.291): a 5G core's charging function calls, served by the online engine.

`POST /nchf-convergedcharging/v3/chargingdata` opens a charging data session (201 and its Location),
`.../chargingdata/{ChargingDataRef}/update` reports use and asks for more, `.../release` ends it (204).
Fields follow the specification's names; fields this platform does not use are accepted and ignored, as a
consumer from another release sends them. The caller is a host network's function, with a client of the
platform holding the `charging:network` scope.

Here: the messages' schemas (which the API document publishes), and the mapping between a message and the
engine's request and answer. `front.NchfFront` serves the routes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from mvne.charging.online.credit import EngineBusy
from mvne.charging.online.messages import (
    ChargingAnswer,
    ChargingRequest,
    RequestKind,
    Result,
    Service,
    SubscriberKind,
    UnitRequest,
)
from mvne.charging.online.service import online_charging
from mvne.infra.fields import DateTime, Integer, Text, fast_loader
from mvne.infra.runtime import Runtime
from mvne.infra.web.problems import ProblemError, ProblemSchema

SCOPE = "charging:network"
# A network client's standing (revoked or not) is read from the database once a second per process, not on
# every request: a core sends thousands a second, and a revocation takes effect within that second.
STANDING_TTL_S = 1.0
UNIT_MAX = 10**13

BASE_PATH = "/nchf-convergedcharging/v3"


class _Open(Schema):
    class Meta:
        unknown = EXCLUDE


class PlmnIdSchema(_Open):
    mcc = Text(required=True, pattern=r"^[0-9]{3}$", max_length=3)
    mnc = Text(required=True, pattern=r"^[0-9]{2,3}$", max_length=3)


class NfIdentificationSchema(_Open):
    nodeFunctionality = Text(required=True, max_length=40)
    nFName = Text(max_length=100)
    nFPLMNID = fields.Nested(PlmnIdSchema)


class UnitsSchema(_Open):
    time = Integer(validate=validate.Range(0, UNIT_MAX))
    totalVolume = Integer(validate=validate.Range(0, UNIT_MAX))
    uplinkVolume = Integer(validate=validate.Range(0, UNIT_MAX))
    downlinkVolume = Integer(validate=validate.Range(0, UNIT_MAX))
    serviceSpecificUnits = Integer(validate=validate.Range(0, UNIT_MAX))


class UsedUnitContainerSchema(UnitsSchema):
    triggers = fields.List(fields.Dict(), validate=validate.Length(max=50))
    localSequenceNumber = Integer(validate=validate.Range(0, 2**32))


class MultipleUnitUsageSchema(_Open):
    ratingGroup = Integer(required=True, validate=validate.Range(0, 2**32 - 1))
    requestedUnit = fields.Nested(UnitsSchema)
    usedUnitContainer = fields.List(fields.Nested(UsedUnitContainerSchema), validate=validate.Length(max=50))


class UserInformationSchema(_Open):
    servedGPSI = Text(max_length=40, pattern=r"^msisdn-[0-9]{5,15}$")


class PduSessionInformationSchema(_Open):
    servingCNPlmnId = fields.Nested(PlmnIdSchema)
    dnnId = Text(max_length=100)


class PduSessionChargingInformationSchema(_Open):
    chargingId = Integer(validate=validate.Range(0, 2**32 - 1))
    userInformation = fields.Nested(UserInformationSchema)
    pduSessionInformation = fields.Nested(PduSessionInformationSchema)


class ImsChargingInformationSchema(_Open):
    calledPartyAddress = Text(max_length=100)


class SmsChargingInformationSchema(_Open):
    recipientAddress = Text(max_length=100)


class ChargingDataRequestSchema(_Open):
    subscriberIdentifier = Text(max_length=40, pattern=r"^(imsi-[0-9]{5,15}|msisdn-[0-9]{5,15})$")
    nfConsumerIdentification = fields.Nested(NfIdentificationSchema, required=True)
    invocationTimeStamp = DateTime(required=True)
    invocationSequenceNumber = Integer(required=True, validate=validate.Range(0, 2**32 - 1))
    notifyUri = Text(max_length=500)
    multipleUnitUsage = fields.List(fields.Nested(MultipleUnitUsageSchema), validate=validate.Length(max=50))
    triggers = fields.List(fields.Dict(), validate=validate.Length(max=50))
    pDUSessionChargingInformation = fields.Nested(PduSessionChargingInformationSchema)
    iMSChargingInformation = fields.Nested(ImsChargingInformationSchema)
    sMSChargingInformation = fields.Nested(SmsChargingInformationSchema)


class ChargingProblemSchema(ProblemSchema):
    """A refusal of the charging routes: a problem, with 3GPP's cause where the specification has one."""

    cause = fields.String(metadata={"description": "TS 29.500's ProblemDetails cause, e.g. SESSION_NOT_FOUND."})


class FinalUnitIndicationSchema(Schema):
    finalUnitAction = fields.String(metadata={"enum": ["TERMINATE", "RESTRICT_ACCESS"]})


class MultipleUnitInformationSchema(Schema):
    resultCode = fields.String()
    ratingGroup = fields.Integer()
    grantedUnit = fields.Nested(UnitsSchema)
    validityTime = fields.Integer()
    finalUnitIndication = fields.Nested(FinalUnitIndicationSchema)


class InvocationResultSchema(Schema):
    failureHandling = fields.String(metadata={"enum": ["TERMINATE", "CONTINUE", "RETRY_AND_TERMINATE"]})


class ChargingDataResponseSchema(Schema):
    invocationTimeStamp = fields.String()
    invocationSequenceNumber = fields.Integer()
    invocationResult = fields.Nested(InvocationResultSchema)
    multipleUnitInformation = fields.List(fields.Nested(MultipleUnitInformationSchema))


REQUEST_SCHEMA = ChargingDataRequestSchema()
_FAST_REQUEST = fast_loader(REQUEST_SCHEMA)


def load_request(body: Any) -> dict[str, Any]:
    """A ChargingDataRequest loaded as `REQUEST_SCHEMA` loads it (raising its `ValidationError`): by the fast
    loader when it is sure, by the schema otherwise."""
    loaded = _FAST_REQUEST(body)
    if loaded is None:
        loaded = REQUEST_SCHEMA.load(body)
    return loaded


# TS 32.291's result codes, per rating group.
RESULT_CODES = {
    Result.SUCCESS: "SUCCESS",
    Result.CREDIT_LIMIT_REACHED: "QUOTA_LIMIT_REACHED",
    Result.SERVICE_DENIED: "END_USER_SERVICE_DENIED",
    Result.NOT_APPLICABLE: "END_USER_SERVICE_DENIED",
    Result.USER_UNKNOWN: "USER_UNKNOWN",
    Result.RATING_FAILED: "RATING_FAILED",
    Result.UNKNOWN_SESSION: "USER_UNKNOWN",
    Result.INVALID: "RATING_FAILED",
}
# A session refused as a whole: HTTP status, the specification's cause, our stable code.
REFUSALS = {
    Result.USER_UNKNOWN: (403, "USER_UNKNOWN", "charging_user_unknown"),
    Result.SERVICE_DENIED: (403, "END_USER_REQUEST_DENIED", "charging_service_denied"),
    Result.NOT_APPLICABLE: (403, "CHARGING_NOT_APPLICABLE", "charging_not_applicable"),
    Result.UNKNOWN_SESSION: (404, "SESSION_NOT_FOUND", "charging_session_not_found"),
    Result.INVALID: (400, "CHARGING_FAILED", "charging_request_invalid"),
}
UNIT_FIELDS = {Service.DATA: "totalVolume", Service.VOICE: "time", Service.SMS: "serviceSpecificUnits"}


CREATE_EXAMPLE = {
    "subscriberIdentifier": "imsi-001010000000001",
    "nfConsumerIdentification": {
        "nodeFunctionality": "SMF",
        "nFName": "smf-1",
        "nFPLMNID": {"mcc": "001", "mnc": "01"},
    },
    "invocationTimeStamp": "2026-12-01T10:00:00Z",
    "invocationSequenceNumber": 0,
    "multipleUnitUsage": [{"ratingGroup": 10, "requestedUnit": {"totalVolume": 10000000}}],
    "pDUSessionChargingInformation": {
        "chargingId": 4711,
        "userInformation": {"servedGPSI": "msisdn-33612345678"},
        "pduSessionInformation": {"servingCNPlmnId": {"mcc": "001", "mnc": "01"}, "dnnId": "internet"},
    },
}
UPDATE_EXAMPLE = {
    "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": "smf-1"},
    "invocationTimeStamp": "2026-12-01T10:05:00Z",
    "invocationSequenceNumber": 1,
    "multipleUnitUsage": [
        {
            "ratingGroup": 10,
            "requestedUnit": {"totalVolume": 10000000},
            "usedUnitContainer": [{"totalVolume": 9500000, "localSequenceNumber": 1}],
        }
    ],
}
RELEASE_EXAMPLE = {
    "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": "smf-1"},
    "invocationTimeStamp": "2026-12-01T10:09:00Z",
    "invocationSequenceNumber": 2,
    "multipleUnitUsage": [
        {"ratingGroup": 10, "usedUnitContainer": [{"totalVolume": 3200000, "localSequenceNumber": 2}]}
    ],
}


def _units(units: dict[str, Any] | None, service: Service) -> int | None:
    if not units:
        return None
    if service == Service.DATA and units.get("totalVolume") is None:
        parts = [units.get("uplinkVolume"), units.get("downlinkVolume")]
        return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
    found = units.get(UNIT_FIELDS[service])
    return int(found) if found is not None else None


def _service(body: dict[str, Any]) -> Service:
    if body.get("iMSChargingInformation") is not None:
        return Service.VOICE
    if body.get("sMSChargingInformation") is not None:
        return Service.SMS
    return Service.DATA


def _digits(address: str | None) -> str | None:
    if not address:
        return None
    digits = "".join(c for c in address.split("@")[0] if c.isdigit())
    return digits[:15] or None


def charging_request(body: dict[str, Any], session_id: str, kind: RequestKind) -> ChargingRequest:
    """The engine's request for a validated ChargingDataRequest (a create must name its subscriber)."""
    if kind == RequestKind.INITIAL and not (
        body.get("subscriberIdentifier")
        or ((body.get("pDUSessionChargingInformation") or {}).get("userInformation") or {}).get("servedGPSI")
    ):
        raise ProblemError(
            400,
            "charging_request_invalid",
            "No subscriberIdentifier or servedGPSI.",
            extra={"cause": "CHARGING_FAILED"},
        )
    service = _service(body)
    pdu = body.get("pDUSessionChargingInformation") or {}
    gpsi = (pdu.get("userInformation") or {}).get("servedGPSI")
    identifier = body.get("subscriberIdentifier") or gpsi or ""
    subscriber_kind = SubscriberKind.IMSI if identifier.startswith("imsi-") else SubscriberKind.MSISDN
    plmn = (pdu.get("pduSessionInformation") or {}).get("servingCNPlmnId") or (
        body["nfConsumerIdentification"].get("nFPLMNID")
    )
    called = (body.get("iMSChargingInformation") or {}).get("calledPartyAddress") or (
        body.get("sMSChargingInformation") or {}
    ).get("recipientAddress")
    units = []
    for usage in body.get("multipleUnitUsage") or ():
        used = sum(_units(c, service) or 0 for c in usage.get("usedUnitContainer") or ())
        final = any(
            (t or {}).get("triggerType") == "FINAL"
            for c in usage.get("usedUnitContainer") or ()
            for t in c.get("triggers") or ()
        )
        # No requestedUnit: the consumer only reports use; an empty one asks for what the engine grants.
        requested = 0 if usage.get("requestedUnit") is None else _units(usage["requestedUnit"], service)
        units.append(UnitRequest(usage["ratingGroup"], requested, used, final))
    return ChargingRequest(
        session_id=session_id,
        kind=kind,
        sequence=body["invocationSequenceNumber"],
        service=service,
        subscriber=identifier.split("-", 1)[1] if "-" in identifier else identifier,
        subscriber_kind=subscriber_kind,
        units=tuple(units),
        visited_plmn=f"{plmn['mcc']}{plmn['mnc']}" if plmn else None,
        called_number=_digits(called),
        at=body["invocationTimeStamp"].astimezone(dt.UTC),
    )


def answer_document(answer: ChargingAnswer, service: Service) -> dict[str, Any]:
    """The ChargingDataResponse for the engine's answer; a refusal as a whole is raised as its problem."""
    if answer.result != Result.SUCCESS:
        status, cause, code = REFUSALS.get(answer.result, (400, "CHARGING_FAILED", "charging_request_invalid"))
        raise ProblemError(status, code, answer.detail or cause, extra={"cause": cause})
    infos = []
    for grant in answer.grants:
        info: dict[str, Any] = {"resultCode": RESULT_CODES[grant.result], "ratingGroup": grant.rating_group}
        if grant.granted is not None:
            info["grantedUnit"] = {UNIT_FIELDS[service]: grant.granted}
        if grant.validity_time is not None:
            info["validityTime"] = grant.validity_time
        if grant.final_unit is not None:
            info["finalUnitIndication"] = {"finalUnitAction": grant.final_unit.action.upper()}
        infos.append(info)
    return {
        "invocationTimeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "invocationSequenceNumber": answer.sequence,
        "invocationResult": {"failureHandling": answer.failure_handling.upper()},
        "multipleUnitInformation": infos,
    }


def handle(rt: Runtime, request: ChargingRequest) -> ChargingAnswer:
    """The engine's answer; 503 `charging_busy` when the line's balance kept changing under it."""
    try:
        return online_charging(rt).handle(request)
    except EngineBusy:
        raise ProblemError(503, "charging_busy", "The line's balance is changing; try again.") from None


def session_reference(body: dict[str, Any]) -> str:
    """The session's ChargingDataRef: from the consumer's name and charging id when given, so a create sent
    again names the same session (and gets the same answer); random otherwise."""
    pdu = body.get("pDUSessionChargingInformation") or {}
    charging_id = pdu.get("chargingId")
    if charging_id is None:
        return secrets.token_hex(16)
    consumer = body["nfConsumerIdentification"]
    seed = f"{consumer.get('nFName') or consumer['nodeFunctionality']}|{charging_id}|{body.get('subscriberIdentifier')}"
    return hashlib.blake2b(seed.encode(), digest_size=16).hexdigest()
