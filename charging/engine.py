"""The rating engine: one usage record against a line's buckets, its terms and the rate cards. Pure, no database.

How a record is rated (docs/rating.md says the same for tenants):
1. Buckets: those of the record's service whose zone is the record's zone, and for an eu record the
   home buckets that roam like at home while their EU fair use lasts; valid at the record's start;
   with something left (or unlimited); by priority, then earliest expiry, then id. A record larger
   than a bucket's remainder is split across buckets; what no bucket covers is overage.
2. Overage at home is priced by the offer version's rate card, else the tenant's default retail card,
   else the offer's usage price pro rata; eu (beyond roam-like-at-home fair use) and world overage by
   the offer's usage price of that zone. On a card the overage is priced as an event of its own
   (first and next increments on the overage quantity); the connect fee only when no bucket covered
   any of the record. Rounded once per record, as the card states (the usage price: half-up, 6 decimals).
3. Wholesale: the record's whole quantity on the host network's wholesale card, when there is one; a record
   made while roaming on the card's lines for its zone (eu, world), else on its home lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import NamedTuple

from mvne.catalog.terms import LineTerms
from mvne.charging import ratecards
from mvne.charging.rating import Service, rate_usage
from mvne.charging.zones import EU, HOME

EXACT_QUANTUM = Decimal("1e-20")
THRESHOLDS = (50, 80, 100)
ZERO = Decimal(0)


@dataclass
class Bucket:
    """A balance bucket as the engine consumes it; `loaded` keeps what was read, to write back only changes."""

    id: str
    subscription_id: str
    service: str
    zone: str
    origin: str
    granted: int | None
    used: int
    valid_from: dt.datetime
    valid_to: dt.datetime
    fair_use: int | None = None
    roam_like_at_home: bool = False
    eu_fair_use: int | None = None
    eu_used: int = 0
    priority: int = 100
    notified_percent: int = 0
    period: str | None = None
    loaded: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.loaded = (self.used, self.eu_used, self.notified_percent)

    @property
    def changed(self) -> bool:
        return (self.used, self.eu_used, self.notified_percent) != self.loaded

    def reset(self) -> None:
        """Back to what was read (a batch rated again after a race)."""
        self.used, self.eu_used, self.notified_percent = self.loaded

    def room(self, *, roaming: bool) -> int | None:
        """What is left for a record (None: no limit); roaming use of a home bucket also stops at its EU fair use."""
        left = None if self.granted is None else max(self.granted - self.used, 0)
        if roaming and self.eu_fair_use is not None:
            eu_left = max(self.eu_fair_use - self.eu_used, 0)
            left = eu_left if left is None else min(left, eu_left)
        return left

    def sort_key(self) -> tuple[int, dt.datetime, str]:
        return (self.priority, self.valid_to, self.id)

    def threshold_crossed(self) -> int | None:
        """The highest of 50, 80, 100 % of the granted quantity now used and not notified yet."""
        if not self.granted:
            return None
        reached = [t for t in THRESHOLDS if self.used * 100 >= self.granted * t and t > self.notified_percent]
        return reached[-1] if reached else None


class Usage(NamedTuple):
    """One record to rate: quantity in metered units (bytes, seconds, messages), its zone and called number.

    (Value objects made once or twice per record are named tuples: a frozen dataclass costs about twice as much
    to make.)
    """

    service: str
    started_at: dt.datetime
    quantity: int
    zone: str = HOME
    called_number: str | None = None


@dataclass(frozen=True)
class Pricing:
    """The compiled cards a batch rates with: by card id, the tenant's default retail card, the wholesale card."""

    cards: Mapping[str, ratecards.CompiledCard] = field(default_factory=dict)
    default_retail_id: str | None = None
    wholesale_id: str | None = None

    def retail_card(self, terms: LineTerms) -> tuple[str, ratecards.CompiledCard] | None:
        card_id = terms.rate_card_id if terms.rate_card_id in self.cards else self.default_retail_id
        if card_id is None or card_id not in self.cards:
            return None
        return card_id, self.cards[card_id]

    @property
    def wholesale_card(self) -> ratecards.CompiledCard | None:
        return self.cards.get(self.wholesale_id) if self.wholesale_id else None


class Priced(NamedTuple):
    """An amount with how it came: rounded and exact, and the rate card line when a card priced it."""

    amount: Decimal
    exact: Decimal
    unit_price: Decimal | None = None
    billed_quantity: int | None = None
    card_id: str | None = None
    version_id: str | None = None
    prefix: str | None = None
    time_band: str | None = None
    connect_fee: bool = False


class Rating(NamedTuple):
    """What rating a record gave: buckets consumed, overage, retail and wholesale prices."""

    allowance_used: int
    overage_quantity: int
    parts: list[tuple[str, int]]
    allowance_before: int | None
    throttled: bool
    fair_use_reached: list[str]
    retail: Priced
    wholesale: Priced | None


def consumable(usage: Usage, buckets: Sequence[Bucket]) -> list[tuple[Bucket, bool]]:
    """The buckets the record may draw on, in the order it draws on them, each with whether it is roaming use."""
    found: list[tuple[Bucket, bool]] = []
    at = usage.started_at
    for bucket in buckets:
        if bucket.service != usage.service or not bucket.valid_from <= at < bucket.valid_to:
            continue
        if bucket.zone == usage.zone:
            roaming = False
        elif usage.zone == EU and bucket.zone == HOME and bucket.roam_like_at_home:
            roaming = True
        else:
            continue
        room = bucket.room(roaming=roaming)
        if room is None or room > 0:
            found.append((bucket, roaming))
    if len(found) > 1:
        found.sort(key=lambda item: item[0].sort_key())
    return found


def _exact(numerator: int, denominator: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(numerator) / Decimal(denominator)).quantize(EXACT_QUANTUM, rounding=ROUND_HALF_UP)


def price_on_card(
    card_id: str,
    card: ratecards.CompiledCard,
    usage: Usage,
    quantity: int,
    *,
    connect_fee: bool,
) -> Priced:
    """`quantity` of the record priced as one event on a card; without the connect fee when `connect_fee` is False."""
    event = ratecards.price(
        card,
        service=usage.service,
        called=usage.called_number,
        started_at=usage.started_at,
        quantity=quantity,
        roaming=None if usage.zone == HOME else usage.zone,
    )
    numerator, line = event.numerator, event.line
    charged_fee = connect_fee and numerator > 0 and line.connect_fee > 0
    if not connect_fee and numerator > 0 and line.connect_fee > 0:
        unit = ratecards.UNITS_PER_PRICED_UNIT[usage.service]
        numerator = int(line.price.scaleb(6)) * event.billed_quantity
        if line.premium_cap is not None:
            numerator = min(numerator, int(line.premium_cap.scaleb(6)) * unit)
    amount = ratecards.round_fraction(numerator, event.denominator, card.precision, card.rounding_mode)
    return Priced(
        amount=amount,
        exact=_exact(numerator, event.denominator),
        unit_price=line.price,
        billed_quantity=event.billed_quantity,
        card_id=card_id,
        version_id=event.version_id,
        prefix=line.prefix,
        time_band=event.time_band,
        connect_fee=charged_fee,
    )


def usage_price(terms: LineTerms, zone: str, service: str) -> Decimal:
    """The offer's price per stated unit beyond the allowances in a zone (a zone without prices is priced as home).

    A service the offer prices nowhere (MMS may be left out) is not given away: `ratecards.PricingError`.
    """
    zone_prices = terms.usage_prices.get(zone) or {}
    found = zone_prices.get(service)
    if found is None:
        found = (terms.usage_prices.get(HOME) or {}).get(service)
    if found is None:
        raise ratecards.PricingError(
            "no_usage_price", f"The offer prices no {service} beyond its allowances, in {zone} or at home."
        )
    return found


def price_overage(usage: Usage, overage: int, covered: bool, terms: LineTerms, pricing: Pricing) -> Priced:
    """The retail price of the overage part of a record (raises `ratecards.PricingError` when a card has no rate)."""
    if overage == 0:
        return Priced(amount=ZERO, exact=ZERO)
    card = pricing.retail_card(terms) if usage.zone == HOME else None
    if card is not None:
        return price_on_card(card[0], card[1], usage, overage, connect_fee=not covered)
    unit_price = usage_price(terms, usage.zone, usage.service)
    result = rate_usage(Service(usage.service), overage, 0, unit_price)
    return Priced(amount=result.amount, exact=result.amount_exact, unit_price=unit_price, billed_quantity=overage)


def price_wholesale(usage: Usage, pricing: Pricing) -> Priced | None:
    """The whole record on the host network's wholesale card; None without a card or a rate on it."""
    card = pricing.wholesale_card
    if card is None or pricing.wholesale_id is None:
        return None
    try:
        return price_on_card(pricing.wholesale_id, card, usage, usage.quantity, connect_fee=True)
    except ratecards.PricingError:
        return None


def rate(usage: Usage, terms: LineTerms, buckets: Sequence[Bucket], pricing: Pricing) -> Rating:
    """Rate one record: consume its buckets, price the rest; the buckets change only when it could be priced."""
    plan: list[tuple[Bucket, bool, int]] = []
    left = usage.quantity
    before: int | None = 0
    for bucket, roaming in consumable(usage, buckets):
        room = bucket.room(roaming=roaming)
        before = None if room is None or before is None else before + room
        if left == 0:
            continue
        take = left if room is None else min(left, room)
        plan.append((bucket, roaming, take))
        left -= take
    covered = usage.quantity - left
    retail = price_overage(usage, left, covered > 0, terms, pricing)
    throttled = False
    reached: list[str] = []
    for bucket, roaming, take in plan:
        if bucket.fair_use is not None and bucket.granted is None and bucket.used + take > bucket.fair_use:
            throttled = True
            if bucket.used <= bucket.fair_use:
                reached.append(bucket.id)
        bucket.used += take
        if roaming:
            bucket.eu_used += take
    return Rating(
        allowance_used=covered,
        overage_quantity=left,
        parts=[(bucket.id, take) for bucket, _, take in plan if take],
        allowance_before=before,
        throttled=throttled,
        fair_use_reached=reached,
        retail=retail,
        wholesale=price_wholesale(usage, pricing),
    )
