"""What the online charging engine is asked and answers, whichever front (Nchf over HTTP, Diameter Gy) carried it.

The words are credit control's (RFC 8506, 3GPP TS 32.299 and TS 32.291): a charging session is opened,
updated and released; each request carries, per rating group, the units used since the last report and
the units wanted next; each answer grants units per rating group, with a result of its own, so one group
may run out of credit while the others keep theirs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class RequestKind(StrEnum):
    """CC-Request-Type (416): 1 initial, 2 update, 3 termination, 4 event; Nchf create, update, release."""

    INITIAL = "initial"
    UPDATE = "update"
    TERMINATION = "termination"
    EVENT = "event"


class Result(StrEnum):
    """A result, the session's or one rating group's; each front maps it to its own code (`DIAMETER_CODES`)."""

    SUCCESS = "success"
    # The group (or the session) has no credit left: Diameter 4012, Nchf QUOTA_LIMIT_REACHED.
    CREDIT_LIMIT_REACHED = "credit_limit_reached"
    # Barred, suspended, or the service is not allowed: Diameter 4010, Nchf END_USER_SERVICE_DENIED.
    SERVICE_DENIED = "service_denied"
    # The line is charged offline only (no online charging for it): Diameter 4011.
    NOT_APPLICABLE = "not_applicable"
    # No line has this subscriber identity: Diameter 5030, Nchf USER_UNKNOWN.
    USER_UNKNOWN = "user_unknown"
    # An update or release for a session the engine does not hold (never opened, released or expired): 5002.
    UNKNOWN_SESSION = "unknown_session"
    # The usage could not be priced (no rate for it): Diameter 5031, Nchf RATING_FAILED.
    RATING_FAILED = "rating_failed"
    # The request cannot be read (a missing identity, a request number out of order): Diameter 5004/5005.
    INVALID = "invalid"


# Diameter Result-Code per result (RFC 8506 section 9, RFC 6733 section 7.1).
DIAMETER_CODES: dict[Result, int] = {
    Result.SUCCESS: 2001,
    Result.CREDIT_LIMIT_REACHED: 4012,
    Result.SERVICE_DENIED: 4010,
    Result.NOT_APPLICABLE: 4011,
    Result.USER_UNKNOWN: 5030,
    Result.UNKNOWN_SESSION: 5002,
    Result.RATING_FAILED: 5031,
    Result.INVALID: 5004,
}


class Service(StrEnum):
    """What a session charges, from the request's context: Service-Context-Id on Gy, the charging information
    block on Nchf. Its units are the rating engine's metered units."""

    DATA = "data"  # bytes (CC-Total-Octets, totalVolume)
    VOICE = "voice"  # seconds (CC-Time, time)
    SMS = "sms"  # messages (CC-Service-Specific-Units, serviceSpecificUnits)


# Service-Context-Id (461) values of 3GPP TS 32.299 for the services above.
SERVICE_CONTEXTS: dict[str, Service] = {
    "32251@3gpp.org": Service.DATA,
    "32260@3gpp.org": Service.VOICE,
    "32274@3gpp.org": Service.SMS,
}


class SubscriberKind(StrEnum):
    MSISDN = "msisdn"  # Subscription-Id-Type 0 END_USER_E164; Nchf "msisdn-..." (servedGPSI)
    IMSI = "imsi"  # Subscription-Id-Type 1 END_USER_IMSI; Nchf "imsi-..." (subscriberIdentifier)


@dataclass(frozen=True)
class UnitRequest:
    """One Multiple-Services-Credit-Control (Gy) or multipleUnitUsage (Nchf) entry of a request."""

    rating_group: int
    # Units wanted next (Requested-Service-Unit): None when the request asks without an amount (the engine's
    # grant size), 0 when it asks for nothing now (it only reports use).
    requested: int | None = None
    # Units used since the last report of this group (Used-Service-Unit), summed over its containers.
    used: int = 0
    # The network asks for nothing more for this group (it reports its last use; Reporting-Reason FINAL).
    final: bool = False


@dataclass(frozen=True)
class ChargingRequest:
    """A credit-control request. `session_id` is the front's own session key (Diameter Session-Id, Nchf
    ChargingDataRef); `sequence` the request's number in it (CC-Request-Number, invocationSequenceNumber):
    a request repeated with the same number gets the first answer again."""

    session_id: str
    kind: RequestKind
    sequence: int
    service: Service
    subscriber: str
    subscriber_kind: SubscriberKind = SubscriberKind.MSISDN
    units: tuple[UnitRequest, ...] = ()
    # Where the subscriber is: the serving network's MCC-MNC (roaming when not the host network's).
    visited_plmn: str | None = None
    # The number a call or a message goes to (E.164 digits), priced on the tenant's rate card.
    called_number: str | None = None
    # When the network sent it; the engine's own clock when absent.
    at: dt.datetime | None = None


@dataclass(frozen=True)
class FinalUnit:
    """Final-Unit-Indication: the grant is the last; when it is used the network acts: `terminate`, or
    `restrict_access` (a throttling spend cap: only what the network's restriction rules allow goes on)."""

    action: str = "terminate"


@dataclass(frozen=True)
class UnitGrant:
    """The answer for one rating group: its result, the units granted, how long they are valid."""

    rating_group: int
    result: Result
    # Granted-Service-Unit in the service's units; None when nothing is granted.
    granted: int | None = None
    # Validity-Time (448), seconds: the network reports before it ends.
    validity_time: int | None = None
    final_unit: FinalUnit | None = None


@dataclass(frozen=True)
class ChargingAnswer:
    """A credit-control answer: the session's result and a grant per rating group asked about."""

    session_id: str
    sequence: int
    result: Result
    grants: tuple[UnitGrant, ...] = ()
    # Credit-Control-Failure-Handling (427) the network applies when the engine does not answer in time.
    failure_handling: str = "terminate"
    detail: str | None = None
    # The line charged (for the fronts' logs; never sent to the network).
    subscription_id: str | None = None
