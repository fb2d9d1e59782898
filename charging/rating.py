"""Rating one usage quantity against what is left of an allowance, the rest priced as overage."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

from mvne.charging.money import quantize_rated


class Service(enum.StrEnum):
    """A rated service. Usage is counted in bytes, seconds or messages."""

    DATA = "data"
    VOICE = "voice"
    SMS = "sms"
    MMS = "mms"


EXACT_QUANTUM = Decimal("1e-20")
# Usage is metered in a small unit, but offers state allowances and overage prices in a larger one.
_UNITS_PER_PRICED_UNIT: dict[Service, int] = {
    Service.DATA: 1_000_000,  # bytes per MB (decimal megabyte, as operators bill)
    Service.VOICE: 60,  # seconds per minute
    Service.SMS: 1,  # an SMS is both metered and priced per message
    Service.MMS: 1,  # so is an MMS
}


@dataclass(frozen=True)
class RatingResult:
    """How much of a usage quantity the allowance covered, the overage, and its amount (6 decimals).

    `amount_exact` is the amount before that rounding, to 20 decimals (a per-second price of a per-minute
    rate has no finite decimal form).
    """

    allowance_used: int
    overage_quantity: int
    amount: Decimal
    # Not part of equality: two ratings billing the same are the same rating.
    amount_exact: Decimal = field(default=Decimal(0), compare=False)


def price_unit(service: Service) -> int:
    """Metered units per priced unit: 1_000_000 bytes per MB, 60 seconds per minute, 1 per SMS or MMS."""
    return _UNITS_PER_PRICED_UNIT[Service(service)]


def allowance_units(service: Service, allowance_amount: int) -> int:
    """An allowance as offers state it (MB, minutes, messages) in metered units (bytes, seconds, messages)."""
    if allowance_amount < 0:
        raise ValueError(f"allowance must not be negative, got {allowance_amount}")
    return allowance_amount * price_unit(service)


def rate_usage(service: Service, quantity: int, remaining_allowance: int, overage_price: Decimal) -> RatingResult:
    """Consume the allowance first, price the rest pro rata at `overage_price` per priced unit."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be an int of metered units, not {type(quantity).__name__}")
    if quantity < 0:
        raise ValueError(f"usage quantity must not be negative, got {quantity}")
    if remaining_allowance < 0:
        raise ValueError(f"remaining allowance must not be negative, got {remaining_allowance}")
    if not isinstance(overage_price, Decimal):
        raise TypeError(f"overage price must be a Decimal, not {type(overage_price).__name__}")
    if not overage_price.is_finite() or overage_price < 0:
        raise ValueError(f"overage price must be a finite amount of at least 0, got {overage_price}")
    allowance_used = min(quantity, remaining_allowance)
    overage = quantity - allowance_used
    # Pro rata per metered unit (a 30-second overage is half the per-minute price), rounded once;
    # the wide context keeps the division exact enough that only the final half-up rounding counts.
    with localcontext() as ctx:
        ctx.prec = 60
        exact = overage_price * overage / price_unit(service)
        amount = quantize_rated(exact)
        exact = exact.quantize(EXACT_QUANTUM, rounding=ROUND_HALF_UP)
    return RatingResult(allowance_used=allowance_used, overage_quantity=overage, amount=amount, amount_exact=exact)
