"""The online charging engine: credit control for a line's sessions, against its buckets and prepaid money.

A session's reservation for a rating group is held as a usage record not yet ended: the units used so far
plus the units granted next, rated by the same engine that rates usage records (`mvne.charging.engine`),
against the line's buckets less what the other sessions hold. Each request rates it again and moves the
line's counters by the difference; the release rates what was used and hands it to the ledger as a usage
record, which rates it again in PostgreSQL exactly as a record from the network would be rated. So the same
usage costs the same whichever way it arrives, and a call is priced once, as one record, whatever the
number of updates it took.

A prepaid line (one with a money balance) is granted only what its buckets and its money cover: when less
than asked is left, the grant is the last (Final-Unit-Indication TERMINATE); when nothing is left the group
is answered credit-limit-reached while the session's other groups keep theirs. A postpaid line's use beyond
its buckets is billed on its invoice. Two sessions of one line never overspend: a request's changes are
applied by one script, only if the line's account is still as the request read it, else worked out again.

The network sends a request again when it got no answer: the same session and request number get the
answer given the first time, and nothing is charged twice. A session no request renews within its
validity time and a grace period goes stale: the sweeper settles what was reported and releases the rest.
When the engine does not answer in time the network follows the answer's failure handling, TERMINATE by
default: service stops rather than runs unmetered.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from mvne.catalog.terms import TermsTimeline, line_terms
from mvne.charging import engine, ratecards
from mvne.charging.balances import money_balance
from mvne.charging.models import BalanceBucket
from mvne.charging.online.messages import (
    ChargingAnswer,
    ChargingRequest,
    FinalUnit,
    RequestKind,
    Result,
    Service,
    SubscriberKind,
    UnitGrant,
    UnitRequest,
)
from mvne.charging.online.store import Change, ChargingStore, Snapshot
from mvne.charging.spend_caps import customer_lines, period_spend, spend_caps_of
from mvne.charging.usage import RatingContext, ensure_plan_buckets, period_of, rating_context
from mvne.charging.zones import valid_plmn, zone_of
from mvne.esim.models import Sim
from mvne.infra.db import Database, utcnow
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Tenant

log = logging.getLogger("mvne.charging.online")

# What a grant is when the network asks for no amount: 10 MB of data, 5 minutes of a call, one message.
DEFAULT_CHUNKS = {Service.DATA: 10_000_000, Service.VOICE: 300, Service.SMS: 1}
# The most one grant may be, whatever the network asks for.
MAX_CHUNKS = {Service.DATA: 1_000_000_000, Service.VOICE: 3600, Service.SMS: 100}
# A grant cut short by money left is whole kilobytes of data, whole seconds, whole messages.
GRANT_STEPS = {Service.DATA: 1000, Service.VOICE: 1, Service.SMS: 1}
# A request's own timestamp is believed within this much of the engine's clock.
CLOCK_SKEW = dt.timedelta(minutes=15)
# Rounds of read, work out, apply before giving up on a line other requests keep changing.
MAX_ROUNDS = 50
# Terms and rate cards are read again after this long (a new offer version, a published card).
TERMS_TTL_S = 30.0
# The most lines whose terms one read brings up to date.
TERMS_BATCH = 500
MICRO = Decimal(1_000_000)


class EngineBusy(RuntimeError):
    """The line's account changed under every attempt: the request is not answered (the network retries)."""


@dataclass(frozen=True)
class Line:
    tenant_id: str
    id: str
    status: str


@dataclass
class Claim:
    """One rating group's reservation in a session: `used` reported so far, `granted` units reserved beyond it,
    what the two together hold of each bucket ([units, EU units]) and of the prepaid money (micro-units)."""

    started_at: str
    used: int = 0
    granted: int = 0
    parts: dict[str, list[int]] = field(default_factory=dict)
    money: int = 0
    settled: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "s": self.started_at,
            "u": self.used,
            "g": self.granted,
            "p": self.parts,
            "m": self.money,
            "n": self.settled,
        }

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Claim:
        return cls(raw["s"], raw["u"], raw["g"], raw["p"], raw["m"], raw.get("n", 0))


@dataclass
class SessionState:
    tenant_id: str
    service: str
    visited_plmn: str | None
    called_number: str | None
    claims: dict[int, Claim]

    def as_json(self) -> str:
        return json.dumps(
            {
                "t": self.tenant_id,
                "svc": self.service,
                "plmn": self.visited_plmn,
                "called": self.called_number,
                "c": {str(rg): claim.as_json() for rg, claim in self.claims.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def of(cls, raw: str) -> SessionState:
        data = json.loads(raw)
        claims = {int(rg): Claim.of(c) for rg, c in data["c"].items()}
        return cls(data["t"], data["svc"], data["plmn"], data["called"], claims)


@dataclass(frozen=True)
class Account:
    """A line's account as read: its buckets (with use, reservations included), prepaid money left, and the spend
    caps over it (the line's, its customer's): (cap, spent this period, action), in micro-units."""

    line_id: str
    buckets: list[tuple[Any, ...]]
    used: dict[str, tuple[int, int]]
    prepaid: bool
    money: int
    customer_id: str
    caps: tuple[tuple[int, int, str], ...] = ()

    @classmethod
    def of(cls, line_id: str, raw: dict[str, str], customer: dict[str, str]) -> Account:
        buckets = _bucket_terms(raw["meta"])
        used = {b[0]: (int(raw.get(f"u:{b[0]}", 0)), int(raw.get(f"e:{b[0]}", 0))) for b in buckets}
        caps = tuple(
            (int(held["cap"]), int(held.get("sp", 0)), held.get("cap_a", "stop"))
            for held in (raw, customer)
            if held.get("cap") is not None
        )
        return cls(line_id, buckets, used, raw.get("pp") == "1", int(raw.get("m", 0)), raw["cus"], caps)

    def buckets_without(self, claim: Claim) -> list[engine.Bucket]:
        """Engine buckets as the claim would find them if it held nothing."""
        found = []
        for (
            bid,
            service,
            zone,
            origin,
            granted,
            valid_from,
            valid_to,
            fair_use,
            rlah,
            eu_fair,
            priority,
        ) in self.buckets:
            used, eu_used = self.used[bid]
            held = claim.parts.get(bid, (0, 0))
            found.append(
                engine.Bucket(
                    id=bid,
                    subscription_id=self.line_id,
                    service=service,
                    zone=zone,
                    origin=origin,
                    granted=granted,
                    used=used - held[0],
                    valid_from=valid_from,
                    valid_to=valid_to,
                    fair_use=fair_use,
                    roam_like_at_home=rlah,
                    eu_fair_use=eu_fair,
                    eu_used=eu_used - held[1],
                    priority=priority,
                )
            )
        return found


_BUCKET_TERMS: dict[str, list[tuple[Any, ...]]] = {}


def _bucket_terms(meta: str) -> list[tuple[Any, ...]]:
    """An account's fixed bucket terms, parsed once per process for each account's text (it changes only when the
    account is read again from the database)."""
    found = _BUCKET_TERMS.get(meta)
    if found is None:
        found = [
            (*b[:5], dt.datetime.fromisoformat(b[5]), dt.datetime.fromisoformat(b[6]), *b[7:])
            for b in json.loads(meta)["b"]
        ]
        if len(_BUCKET_TERMS) >= 100_000:
            _BUCKET_TERMS.clear()
        _BUCKET_TERMS[meta] = found
    return found


@dataclass(frozen=True)
class _Rated:
    """A claim rated at one quantity: what it holds of each bucket and of the money, or why it cannot be priced."""

    parts: dict[str, list[int]]
    money: int
    amount: Decimal
    error: str | None = None


class _Cache:
    """Per process: lines by subscriber identity, terms by line, rating contexts by tenant, each for a while."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: dict[tuple[str, str], tuple[float, Line | None]] = {}
        # line -> (read at, its terms, its tenant), oldest read first
        self.terms: dict[str, tuple[float, TermsTimeline | None, str]] = {}
        self.contexts: dict[str, tuple[float, RatingContext]] = {}


class _Written:
    """Per process: each session's and each line's account as this process last wrote them (bounded)."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, Snapshot] = {}
        self.accounts: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    def get(self, session_key: str, line_id: str | None) -> Snapshot | None:
        found = self.sessions.get(session_key)
        if found is not None:
            return found
        if line_id is not None and (held := self.accounts.get(line_id)) is not None:
            return Snapshot({}, held[0], held[1])
        return None

    def put(self, session_key: str, line_id: str, snap: Snapshot) -> None:
        with self.lock:
            if len(self.sessions) >= self.LIMIT:
                self.sessions.clear()
            if len(self.accounts) >= self.LIMIT:
                self.accounts.clear()
            self.sessions[session_key] = snap
            self.accounts[line_id] = (snap.account, snap.customer)


def written(snap: Snapshot, change: Change, line_id: str) -> Snapshot:
    """The session, the account and the customer as the apply script leaves them, from what they were."""
    account, customer = dict(snap.account), dict(snap.customer)
    for name, delta in change.counters.items():
        held, field = (customer, name[2:]) if name.startswith("c:") else (account, name)
        held[field] = str(int(held.get(field, 0)) + delta)
    opened = {"open": 1 if change.mode == "open" else (-1 if change.mode == "close" and change.session_seq else 0)}
    for held in (account, customer):
        held["v"] = str(int(held["v"]) + 1)
        held["open"] = str(int(held.get("open", 0)) + opened["open"])
        held["pend"] = str(int(held.get("pend", 0)) + len(change.settled))
    session = {**snap.session, "seq": str(change.sequence), "ans": change.answer, "state": change.state}
    session["line"] = line_id
    if change.mode == "close":
        session["closed"] = "1"
    return Snapshot(session, account, customer)


def answer_json(answer: ChargingAnswer) -> str:
    return json.dumps(
        {
            "r": answer.result.value,
            "d": answer.detail,
            "f": answer.failure_handling,
            "l": answer.subscription_id,
            "g": [
                [
                    g.rating_group,
                    g.result.value,
                    g.granted,
                    g.validity_time,
                    g.final_unit.action if g.final_unit else None,
                ]
                for g in answer.grants
            ],
        },
        separators=(",", ":"),
    )


def answer_of(raw: str, session_id: str, sequence: int) -> ChargingAnswer:
    data = json.loads(raw)
    grants = tuple(
        UnitGrant(rg, Result(result), granted, validity, FinalUnit(final) if final else None)
        for rg, result, granted, validity, final in data["g"]
    )
    return ChargingAnswer(session_id, sequence, Result(data["r"]), grants, data["f"], data["d"], data["l"])


class OnlineCharging:
    """Credit control over Redis (`ChargingStore`), with PostgreSQL read for lines, terms, buckets and money."""

    def __init__(
        self,
        db: Database,
        store: ChargingStore,
        *,
        validity_s: int = 3600,
        grace_s: int = 60,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.store = store
        self.validity_s = validity_s
        self.grace_s = grace_s
        self.clock = clock
        self._cache = _Cache()
        self._written = _Written()

    # The request ---------------------------------------------------------------------------------------------

    def handle(self, request: ChargingRequest) -> ChargingAnswer:  # noqa: PLR0911 (one answer per refusal)
        """Answer one credit-control request (the same answer again for a request repeated)."""
        invalid = _invalid(request)
        if invalid is not None:
            return self._refuse(request, Result.INVALID, invalid)
        now = self.clock()
        at = request.at or now
        if abs(at - now) > CLOCK_SKEW:
            return self._refuse(request, Result.INVALID, "The request's timestamp is too far from the engine's clock.")
        key = self.store.session_key(request.session_id)
        line: Line | None = None
        if request.kind in (RequestKind.INITIAL, RequestKind.EVENT):
            line = self._line(request.subscriber_kind, request.subscriber)
            if line is None:
                return self._refuse(request, Result.USER_UNKNOWN, "No line has this subscriber identity.")
            if line.status != "active":
                return self._refuse(request, Result.SERVICE_DENIED, f"The line is {line.status}.", line.id)
        for attempt in range(MAX_ROUNDS):
            # First what this process wrote last for the session (or the line): right, unless another process has
            # changed them since, which the script applying the changes sees (then they are read).
            cached = self._written.get(key, line.id if line else None) if attempt == 0 else None
            snap = cached or self.store.read(key, line.id if line else None)
            if snap.session.get("seq") == str(request.sequence) and "ans" in snap.session:
                return answer_of(snap.session["ans"], request.session_id, request.sequence)
            refusal = _session_refusal(request, snap)
            if refusal is not None:
                return self._refuse(request, *refusal)
            line_id = line.id if line else snap.session["line"]
            if not snap.account or not snap.customer:
                tenant_id = line.tenant_id if line else SessionState.of(snap.session["state"]).tenant_id
                self._load_account(tenant_id, line_id, now)
                continue
            worked = self._work_out(request, snap, line, line_id, at, now, key)
            if worked is None:
                return self._refuse(request, Result.NOT_APPLICABLE, "The line has no terms to charge it by.", line_id)
            answer, change = worked
            if self.store.apply(key, line_id, snap.account["cus"], change):
                self._written.put(key, line_id, written(snap, change, line_id))
                return answer
        raise EngineBusy(f"the account of line {line.id if line else '?'} kept changing")

    def expire(self, session_key: str) -> bool:
        """Settle a stale session: what was reported is charged, the rest of its grants released."""
        raw = self.store.session_of_key(session_key)
        if not raw or raw.get("closed") == "1" or "state" not in raw:
            return False
        state = SessionState.of(raw["state"])
        request = ChargingRequest(
            session_id=f"expired:{session_key}",
            kind=RequestKind.TERMINATION,
            # Kept as the closed session's last number: no request of the network's can repeat it.
            sequence=-1,
            service=Service(state.service),
            subscriber="",
            at=self.clock(),
        )
        for _ in range(MAX_ROUNDS):
            snap = self.store.read(session_key, None)
            if not snap.session or snap.session.get("closed") == "1" or not snap.account:
                return False
            now = self.clock()
            if not snap.customer:
                self._load_account(state.tenant_id, snap.session["line"], now)
                continue
            worked = self._work_out(request, snap, None, snap.session["line"], now, now, session_key)
            if worked is None:
                return False
            if self.store.apply(session_key, snap.session["line"], snap.account["cus"], worked[1]):
                log.info("charging session %s went stale and was settled", session_key)
                return True
        return False

    def sweep(self, limit: int = 500) -> int:
        """Settle the sessions gone stale; how many."""
        now = self.clock().timestamp()
        return sum(1 for key in self.store.stale_sessions(now, limit) if self.expire(key))

    # Working a request out ------------------------------------------------------------------------------------

    def _work_out(  # noqa: PLR0917 (the request's parts, read once by the caller)
        self,
        request: ChargingRequest,
        snap: Snapshot,
        line: Line | None,
        line_id: str,
        at: dt.datetime,
        now: dt.datetime,
        key: str,
    ) -> tuple[ChargingAnswer, Change] | None:
        """The request's answer and its changes to the account and the session (None: the line has no terms)."""
        if snap.session and "state" in snap.session:
            state = SessionState.of(snap.session["state"])
        else:
            assert line is not None
            plmn = request.visited_plmn if request.visited_plmn and valid_plmn(request.visited_plmn) else None
            state = SessionState(line.tenant_id, request.service.value, plmn, request.called_number, {})
        timeline = self._terms(state.tenant_id, line_id)
        if timeline is None:
            return None
        context = self._context(state.tenant_id, timeline)
        account = Account.of(line_id, snap.account, snap.customer)
        work = _Work(request, state, account, timeline, context, at, key, self.validity_s)
        asked = {unit.rating_group: unit for unit in request.units}
        if request.kind == RequestKind.TERMINATION:
            for rg in state.claims:
                asked.setdefault(rg, UnitRequest(rg, final=True))
        for rg, unit in asked.items():
            work.group(rg, unit)
        answer = ChargingAnswer(
            request.session_id, request.sequence, Result.SUCCESS, tuple(work.grants), subscription_id=line_id
        )
        closing = request.kind in (RequestKind.TERMINATION, RequestKind.EVENT)
        change = Change(
            version=snap.account["v"],
            customer_version=snap.customer["v"],
            session_seq="closed" if snap.session.get("closed") == "1" else snap.session.get("seq", ""),
            mode="close" if closing else ("open" if request.kind == RequestKind.INITIAL else "keep"),
            sequence=request.sequence,
            answer=answer_json(answer),
            state=state.as_json(),
            stale_at=int(now.timestamp()) + self.validity_s + self.grace_s,
            counters=work.counters,
            settled=work.settled,
        )
        return answer, change

    def _refuse(
        self, request: ChargingRequest, result: Result, detail: str, line_id: str | None = None
    ) -> ChargingAnswer:
        grants = tuple(UnitGrant(u.rating_group, result) for u in request.units) if result != Result.INVALID else ()
        return ChargingAnswer(
            request.session_id, request.sequence, result, grants, detail=detail, subscription_id=line_id
        )

    # PostgreSQL reads, cached per process -----------------------------------------------------------------------

    def _line(self, kind: SubscriberKind, identity: str) -> Line | None:
        key = (kind.value, identity)
        now = time.monotonic()
        with self._cache.lock:
            hit = self._cache.lines.get(key)
        if hit is not None and now - hit[0] < TERMS_TTL_S:
            return hit[1]
        with self.db.session(platform=True) as session:
            query = select(Subscription.tenant_id, Subscription.id, Subscription.status)
            if kind == SubscriberKind.IMSI:
                query = query.join(Sim, Sim.id == Subscription.sim_id).where(Sim.imsi == identity)
            else:
                # Networks send E.164 digits without the "+" the platform stores numbers with.
                query = query.where(Subscription.msisdn == (identity if identity.startswith("+") else f"+{identity}"))
            row = session.execute(query.order_by(Subscription.created_at.desc()).limit(1)).first()
        found = Line(*row) if row else None
        with self._cache.lock:
            if len(self._cache.lines) > 200_000:
                self._cache.lines.clear()
            self._cache.lines[key] = (now, found)
        return found

    def _terms(self, tenant_id: str, line_id: str) -> TermsTimeline | None:
        """The line's terms, as this process read them less than `TERMS_TTL_S` ago.

        Read again, they are read with the other lines whose terms expired here (the oldest first, up to
        `TERMS_BATCH`, one query per tenant): a process serving many lines would otherwise query once per line
        every `TERMS_TTL_S`.
        """
        now = time.monotonic()
        hit = self._cache.terms.get(line_id)
        if hit is not None and now - hit[0] < TERMS_TTL_S:
            return hit[1]
        wanted: dict[str, list[str]] = {tenant_id: [line_id]}
        with self._cache.lock:
            count = 1
            for other, (read_at, _, other_tenant) in self._cache.terms.items():
                if now - read_at < TERMS_TTL_S or count >= TERMS_BATCH:
                    break  # read oldest first: the rest are fresher
                if other != line_id:
                    wanted.setdefault(other_tenant, []).append(other)
                    count += 1
        found: dict[str, tuple[TermsTimeline | None, str]] = {}
        for tenant, lines in wanted.items():
            with self.db.session(tenant_id=tenant) as session:
                timelines = line_terms(session, lines)
            found.update((line, (timelines.get(line), tenant)) for line in lines)
        with self._cache.lock:
            if len(self._cache.terms) > 200_000:
                self._cache.terms.clear()
            for line, (timeline, tenant) in found.items():
                self._cache.terms.pop(line, None)  # to the end: the order stays oldest read first
                self._cache.terms[line] = (now, timeline, tenant)
        return found[line_id][0]

    def _context(self, tenant_id: str, timeline: TermsTimeline) -> RatingContext:
        cards = tuple(sorted({t.rate_card_id for t in timeline.terms if t.rate_card_id}))
        key = f"{tenant_id}:{','.join(cards)}"
        now = time.monotonic()
        hit = self._cache.contexts.get(key)
        if hit is not None and now - hit[0] < TERMS_TTL_S:
            return hit[1]
        with self.db.session(tenant_id=tenant_id) as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            context = rating_context(session, tenant, {"line": timeline})
        with self._cache.lock:
            if len(self._cache.contexts) > 10_000:
                self._cache.contexts.clear()
            self._cache.contexts[key] = (now, context)
        return context

    def forget(self, line_id: str | None = None) -> None:
        """Drop what this process cached (terms and contexts; a line's identity too when named)."""
        with self._cache.lock:
            self._cache.terms.clear()
            self._cache.contexts.clear()
            if line_id is None:
                self._cache.lines.clear()

    def _load_account(self, tenant_id: str, line_id: str, now: dt.datetime) -> None:
        """Read a line's buckets valid now, its money and spend caps with this period's spending into Redis (the
        current period's plan buckets made), and its customer's cap and spending unless Redis holds them."""
        with self.db.session(tenant_id=tenant_id) as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            period = period_of(now, tenant.timezone)
            timelines = line_terms(session, [line_id])
            if line_id in timelines:
                ensure_plan_buckets(session, tenant, {(line_id, period)}, timelines)
            rows = session.execute(
                select(
                    BalanceBucket.id,
                    BalanceBucket.service,
                    BalanceBucket.zone,
                    BalanceBucket.origin,
                    BalanceBucket.granted,
                    BalanceBucket.valid_from,
                    BalanceBucket.valid_to,
                    BalanceBucket.fair_use,
                    BalanceBucket.roam_like_at_home,
                    BalanceBucket.eu_fair_use,
                    BalanceBucket.priority,
                    BalanceBucket.used,
                    BalanceBucket.eu_used,
                ).where(
                    BalanceBucket.subscription_id == line_id,
                    BalanceBucket.valid_to > now,
                    BalanceBucket.valid_from <= now + dt.timedelta(seconds=self.validity_s),
                )
            ).all()
            balance = money_balance(session, line_id)
            customer_id = session.scalar(select(Subscription.customer_id).where(Subscription.id == line_id))
            assert customer_id is not None
            line_cap, customer_cap = spend_caps_of(session, line_id, customer_id)
            line_spent = period_spend(session, [line_id], period)
            # Kept whether or not the customer has a cap: one set later counts what was spent before.
            customer_spent = period_spend(session, customer_lines(session, customer_id), period)
            session.commit()
        meta = {
            "b": [
                [
                    r.id,
                    r.service,
                    r.zone,
                    r.origin,
                    r.granted,
                    r.valid_from.isoformat(),
                    r.valid_to.isoformat(),
                    r.fair_use,
                    r.roam_like_at_home,
                    r.eu_fair_use,
                    r.priority,
                ]
                for r in rows
            ],
        }
        fields: dict[str, str | int] = {
            "v": 1,
            "open": 0,
            "pend": 0,
            "cus": customer_id,
            "sp": int(line_spent * MICRO),
            "meta": json.dumps(meta, separators=(",", ":")),
        }
        for r in rows:
            fields[f"u:{r.id}"] = r.used
            fields[f"e:{r.id}"] = r.eu_used
        if balance is not None:
            fields["pp"] = 1
            fields["m"] = int(balance.amount * MICRO)
        if line_cap is not None:
            fields["cap"], fields["cap_a"] = int(line_cap.amount * MICRO), line_cap.action
        customer: dict[str, str | int] = {"v": 1, "open": 0, "pend": 0, "sp": int(customer_spent * MICRO)}
        if customer_cap is not None:
            customer["cap"], customer["cap_a"] = int(customer_cap.amount * MICRO), customer_cap.action
        self.store.init_account(line_id, fields, customer_id, customer)


class _Work:
    """One request worked out against a line's account: per rating group, its grant and what it changes."""

    def __init__(  # noqa: PLR0917 (each is one part of the request's context)
        self,
        request: ChargingRequest,
        state: SessionState,
        account: Account,
        timeline: TermsTimeline,
        context: RatingContext,
        at: dt.datetime,
        key: str,
        validity_s: int,
    ) -> None:
        self.request, self.state, self.account, self.timeline = request, state, account, timeline
        self.pricing = context.pricing
        self.at, self.key, self.validity_s = at, key, validity_s
        self.service = Service(state.service)
        self.zone = zone_of(state.visited_plmn, context.home_mcc)
        self.event = request.kind == RequestKind.EVENT
        self.closing = request.kind in (RequestKind.TERMINATION, RequestKind.EVENT)
        self.money_left = account.money
        # What each spend cap has left, moved as this request's groups hold more or less.
        self.cap_left = [cap - spent for cap, spent, _ in account.caps]
        self.counters: dict[str, int] = {}
        self.grants: list[UnitGrant] = []
        self.settled: list[str] = []

    def group(self, rg: int, unit: UnitRequest) -> None:
        """Rate the group's claim again with what was used and what is wanted next; grant what is covered."""
        service, claim = self.service, self.state.claims.get(rg) or Claim(started_at=self.at.isoformat())
        # An event (a message) is charged as it is asked for: its units are used at once.
        claim.used += (unit.used or unit.requested or DEFAULT_CHUNKS[service]) if self.event else unit.used
        final = self.closing or unit.final
        asked = DEFAULT_CHUNKS[service] if unit.requested is None else unit.requested
        want = 0 if final else min(asked, MAX_CHUNKS[service])
        started = dt.datetime.fromisoformat(claim.started_at)
        terms = self.timeline.at(started) or self.timeline.terms[-1]
        buckets = self.account.buckets_without(claim)
        called = self.state.called_number

        def rated(quantity: int) -> _Rated:
            usage = engine.Usage(service.value, started, quantity, self.zone, called)
            return _rate(usage, terms, buckets, self.pricing)

        room, action = self._room(claim)
        granted, now_rated, paid = _fit(rated, claim.used, want, room, GRANT_STEPS[service])
        if self.event and not paid:
            # Not charged, not delivered: the event is refused and holds nothing.
            self.grants.append(UnitGrant(rg, Result.RATING_FAILED if now_rated.error else Result.CREDIT_LIMIT_REACHED))
            return
        self._move(claim, now_rated)
        claim.granted = granted
        if self.event:
            self.grants.append(UnitGrant(rg, Result.SUCCESS, claim.used))
        else:
            self.grants.append(_grant(rg, want, granted, now_rated, self.validity_s, final=final, action=action))
        if not final:
            self.state.claims[rg] = claim
            return
        if claim.used > 0:
            self.settled.append(self._settled(rg, claim, now_rated.amount))
        # The group starts afresh if the network asks for it again in this session.
        self.state.claims[rg] = Claim(started_at=self.at.isoformat(), settled=claim.settled + 1)
        if self.closing:
            self.state.claims.pop(rg)

    def _room(self, claim: Claim) -> tuple[int | None, str]:
        """What the claim may hold in all (None: no limit): the least of the money and the caps left, counting what
        it holds already; and what the network does when that runs out."""
        rooms: list[tuple[int, str]] = []
        if self.account.prepaid:
            rooms.append((self.money_left + claim.money, "terminate"))
        for left, (_, _, action) in zip(self.cap_left, self.account.caps, strict=True):
            rooms.append((left + claim.money, "restrict_access" if action == "throttle" else "terminate"))
        if not rooms:
            return None, "terminate"
        return min(rooms)

    def _move(self, claim: Claim, now_rated: _Rated) -> None:
        """The account's counters move by what the claim holds now less what it held."""
        for bid in set(now_rated.parts) | set(claim.parts):
            new, old = now_rated.parts.get(bid, [0, 0]), claim.parts.get(bid, [0, 0])
            if new[0] != old[0]:
                self.counters[f"u:{bid}"] = self.counters.get(f"u:{bid}", 0) + new[0] - old[0]
            if new[1] != old[1]:
                self.counters[f"e:{bid}"] = self.counters.get(f"e:{bid}", 0) + new[1] - old[1]
        spend = now_rated.money - claim.money
        if spend:
            if self.account.prepaid:
                self.counters["m"] = self.counters.get("m", 0) - spend
                self.money_left -= spend
            # The line's and its customer's spending this period, which their caps bound.
            self.counters["sp"] = self.counters.get("sp", 0) + spend
            self.counters["c:sp"] = self.counters.get("c:sp", 0) + spend
            self.cap_left = [left - spend for left in self.cap_left]
        claim.parts, claim.money = now_rated.parts, now_rated.money

    def _settled(self, rg: int, claim: Claim, amount: Decimal) -> str:
        """A settled group's usage as the ledger writes it: one usage record, its id unique to session and group."""
        digest = self.key.rsplit(":", 1)[-1]
        return json.dumps(
            {
                "t": self.state.tenant_id,
                "l": self.account.line_id,
                "id": f"online:{digest}:{rg}:{claim.settled}",
                "svc": self.state.service,
                "at": claim.started_at,
                "q": claim.used,
                "plmn": self.state.visited_plmn,
                "called": self.state.called_number,
                "rg": rg,
                "cus": self.account.customer_id,
                "amount": str(amount),
            },
            separators=(",", ":"),
        )


def _rate(usage: engine.Usage, terms: Any, buckets: list[engine.Bucket], pricing: engine.Pricing) -> _Rated:
    """The claim at `usage.quantity`, rated on copies of the buckets (so a trial changes nothing)."""
    trial = [copy.copy(b) for b in buckets]
    try:
        rating = engine.rate(usage, terms, trial, pricing)
    except ratecards.PricingError as exc:
        return _Rated({}, 0, Decimal(0), error=exc.detail)
    parts: dict[str, list[int]] = {}
    for before, after in zip(buckets, trial, strict=True):
        du, de = after.used - before.used, after.eu_used - before.eu_used
        if du or de:
            parts[after.id] = [du, de]
    amount = rating.retail.amount
    return _Rated(parts, int(amount * MICRO), amount)


def _fit(
    rated: Callable[[int], _Rated], used: int, want: int, room: int | None, step: int = 1
) -> tuple[int, _Rated, bool]:
    """The most units up to `want` beyond `used` that can be priced and, with `room` (None: no limit), paid for, in
    whole `step`s when less than `want`; the claim rated at `used` plus that; and whether `used` alone is."""

    def fits(result: _Rated) -> bool:
        return result.error is None and (room is None or result.money <= room)

    full = rated(used + want)
    if fits(full):
        return want, full, True
    low, low_rated = 0, rated(used)
    if not fits(low_rated):
        return 0, low_rated, False
    # Searched in steps: a partial grant of data is whole kilobytes, not a byte count rounding happens to allow.
    high = want // step + 1
    while high - low > 1:
        middle = (low + high) // 2
        trial = rated(used + middle * step)
        if fits(trial):
            low, low_rated = middle, trial
        else:
            high = middle
    return low * step, low_rated, True


def _grant(
    rg: int, want: int, granted: int, rated: _Rated, validity_s: int, *, final: bool, action: str = "terminate"
) -> UnitGrant:
    if final or want == 0:  # released, or only reporting use: nothing to grant
        return UnitGrant(rg, Result.RATING_FAILED if rated.error else Result.SUCCESS)
    if granted == 0:
        result = Result.RATING_FAILED if rated.error and want == 0 else Result.CREDIT_LIMIT_REACHED
        return UnitGrant(rg, result, final_unit=FinalUnit(action))
    last = FinalUnit(action) if granted < want else None
    return UnitGrant(rg, Result.SUCCESS, granted, validity_s, last)


def _invalid(request: ChargingRequest) -> str | None:  # noqa: PLR0911 (one reason per check)
    if not request.session_id or len(request.session_id) > 1000:
        return "The session id is missing or longer than 1,000 characters."
    if request.sequence < 0 or request.sequence > 2**32:
        return "The request number is out of range."
    if request.kind in (RequestKind.INITIAL, RequestKind.EVENT) and not request.subscriber:
        return "The request names no subscriber."
    seen: set[int] = set()
    for unit in request.units:
        if unit.rating_group < 0 or unit.rating_group > 2**32 or unit.rating_group in seen:
            return "A rating group is out of range or named twice."
        seen.add(unit.rating_group)
        if unit.used < 0 or unit.used > MAX_CHUNKS[request.service] * 100:
            return "A used quantity is out of range."
        if unit.requested is not None and unit.requested < 0:
            return "A requested quantity is negative."
    if request.kind == RequestKind.INITIAL and any(u.used for u in request.units):
        return "An initial request reports no use."
    return None


def _session_refusal(request: ChargingRequest, snap: Snapshot) -> tuple[Result, str] | None:
    exists = bool(snap.session) and "state" in snap.session
    closed = snap.session.get("closed") == "1"
    if request.kind in (RequestKind.INITIAL, RequestKind.EVENT):
        if exists:
            return Result.INVALID, "A session with this id exists already."
        return None
    if not exists or closed:
        return Result.UNKNOWN_SESSION, "No open session has this id (never opened, released, or expired)."
    if request.sequence <= int(snap.session["seq"]):
        return Result.INVALID, "The request number is not after the session's last."
    return None
