"""Rate cards in memory: checking a version's lines and time bands, compiling them, pricing one event.

Pure functions, no database. A published version is compiled once into a prefix index (a dict per
service keyed by prefix, probed from the longest prefix the called number could match down to the
default `*`), so pricing an event costs at most 16 dict probes, whatever the number of prefixes.

How an event is priced (the explanation a quote returns says each step):
1. the version in effect at the event's start instant: from its `effective_from` (local midnight in
   the version's time zone, inclusive) to its `effective_to` (exclusive) or, when it has none, to the
   next published version's start;
2. the time band of the event's *local start time*: a call that starts at 07:59 off-peak is rated
   off-peak to its end (bands are never split inside one event);
3. the line of the longest prefix of the called number that has a line for the service in that band,
   or one without a band; `*` is the default line. An event made while roaming (in the `eu` or `world`
   zone) looks first among the lines for that roaming zone (`roaming`), then among the home lines, so a
   card without roaming lines prices roaming as at home;
4. the billed quantity: nothing for an event of quantity 0; else the first increment, then whole next
   increments, always rounded up (61 s at 60/60 bills 120 s, at 30/6 66 s, at 1/1 61 s; data in blocks
   of KB, 1 KB = 1000 bytes);
5. the amount: connect fee + price x billed quantity / priced unit (per minute, per message, per MB),
   computed exactly on integers of micro-units, capped at the premium cap, then rounded once, with the
   card's rounding mode, to the card's precision (never per increment); a zero-rated line costs 0.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mvne.charging.zones import EU, WORLD

SERVICES = ("voice", "sms", "mms", "data")
# Where the subscriber is when a line applies (none: at home, and roaming events no roaming line prices).
ROAMING_ZONES = (EU, WORLD)
ROUNDING_MODES = ("half_up", "half_even", "up", "down")
MAX_PRECISION = 6
DEFAULT_PREFIX = "*"
MAX_PREFIX_DIGITS = 15
MAX_INCREMENT = 86_400  # a day of seconds, or 86 MB of KB blocks: anything larger is a typo
MAX_LINE_ERRORS = 1000
ISO_WEEKDAYS = range(1, 8)

# Metered units per priced unit: seconds per minute, messages per message, bytes per MB.
UNITS_PER_PRICED_UNIT = {"voice": 60, "sms": 1, "mms": 1, "data": 1_000_000}
# Metered units per increment unit: increments are seconds, messages, or KB of 1000 bytes.
UNITS_PER_INCREMENT = {"voice": 1, "sms": 1, "mms": 1, "data": 1000}
METERED_UNIT = {"voice": "second", "sms": "message", "mms": "message", "data": "byte"}
PRICED_UNIT = {"voice": "minute", "sms": "message", "mms": "message", "data": "MB"}
INCREMENT_UNIT = {"voice": "second", "sms": "message", "mms": "message", "data": "KB"}

_MICRO = 10**6
_AMOUNT = re.compile(r"[0-9]{1,14}(\.[0-9]{1,6})?", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)
_ZONE = re.compile(r"[A-Za-z0-9 _.,()/+-]{1,64}", re.ASCII)
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00", re.ASCII)
_SERVICE = re.compile(r"voice|sms|mms|data", re.ASCII | re.IGNORECASE)
_CALLED = re.compile(r"\+?([0-9]{1,15})", re.ASCII)
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}

LINE_FIELDS = (
    "prefix",
    "zone",
    "service",
    "connect_fee",
    "price",
    "first_increment",
    "next_increment",
    "time_band",
    "zero_rated",
    "premium",
    "premium_cap",
    "roaming",
)
REQUIRED_LINE_FIELDS = ("prefix", "zone", "service", "price", "first_increment", "next_increment")


class PricingError(ValueError):
    """An event the card cannot price; `code` says why (`no_version_in_effect`, `no_matching_rate`, ...)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class LineError:
    """Why one line of a version is refused: its line number, the field, a stable code and the fix."""

    line: int
    field: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class RateLine:
    """One line of a rate card version, checked."""

    prefix: str
    zone: str
    service: str
    connect_fee: Decimal
    price: Decimal
    first_increment: int
    next_increment: int
    time_band: str | None = None
    zero_rated: bool = False
    premium: bool = False
    premium_cap: Decimal | None = None
    roaming: str | None = None


@dataclass(frozen=True)
class BandWindow:
    """Part of the week, in local time, that belongs to a time band: ISO weekdays and [start, end) minutes."""

    band: str
    days: frozenset[int]
    start: int
    end: int

    def contains(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end


# Checking --------------------------------------------------------------------------------------------------


def _minutes(text: str) -> int | None:
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    return 1440 if text == "24:00" else int(match[1]) * 60 + int(match[2])


def check_time_bands(raw: Sequence[Mapping[str, Any]]) -> tuple[list[BandWindow], list[LineError]]:
    """The version's band table; errors number windows from 1 (`line` is the window's position)."""
    windows: list[BandWindow] = []
    errors: list[LineError] = []
    for position, item in enumerate(raw, start=1):
        name, days, start_text, end_text = item.get("name"), item.get("days"), item.get("start"), item.get("end")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append(
                LineError(position, "name", "invalid_time_band", "A band name: 1 to 32 letters, digits, _ . -")
            )
            continue
        if not isinstance(days, list) or not days or any(isinstance(d, bool) or d not in ISO_WEEKDAYS for d in days):
            errors.append(
                LineError(position, "days", "invalid_time_band", "ISO weekdays 1 (Monday) to 7 (Sunday), at least one.")
            )
            continue
        start = _minutes(start_text) if isinstance(start_text, str) else None
        end = _minutes(end_text) if isinstance(end_text, str) else None
        if start is None or end is None or start == 1440 or end <= start:
            errors.append(
                LineError(
                    position,
                    "start",
                    "invalid_time_band",
                    "Local times HH:MM, start before end (end may be 24:00); split a window across midnight in two.",
                )
            )
            continue
        window = BandWindow(name, frozenset(days), start, end)
        for other in windows:
            if window.days & other.days and window.start < other.end and other.start < window.end:
                errors.append(
                    LineError(
                        position,
                        "start",
                        "invalid_time_band",
                        f"Overlaps a window of band {other.band!r}: a local time belongs to one band at most.",
                    )
                )
                break
        else:
            windows.append(window)
    return windows, errors


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    return None


def _amount(value: Any) -> Decimal | None:
    text = str(value) if isinstance(value, Decimal) else _text(value)
    if text is None or not _AMOUNT.fullmatch(text):
        return None
    return Decimal(text)


def _increment(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = _text(value)
    if text is not None and re.fullmatch(r"-?[0-9]{1,9}", text, re.ASCII):
        return int(text)
    return None


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


class _LineFields:
    """One raw line's fields read one by one, each wrong one noted with its code."""

    def __init__(self, number: int, raw: Mapping[str, Any]) -> None:
        self.number = number
        self.raw = raw
        self.errors: list[LineError] = []

    def wrong(self, name: str, code: str, detail: str) -> None:
        self.errors.append(LineError(self.number, name, code, detail))

    def text(self, name: str, pattern: re.Pattern[str], code: str, detail: str) -> str:
        value = _text(self.raw.get(name)) or ""
        if not pattern.fullmatch(value):
            self.wrong(name, code, detail)
        return value

    def money(self, name: str, *, default: Decimal | None) -> Decimal | None:
        value = self.raw.get(name)
        if value in (None, "") and name != "price":
            return default
        amount = _amount(value)
        if amount is None:
            self.wrong(name, "invalid_price", "A non-negative decimal with at most 6 decimals, such as 0.12.")
        return amount

    def increment(self, name: str, service: str) -> int:
        value = _increment(self.raw.get(name))
        if value is None or not 1 <= value <= MAX_INCREMENT:
            unit = INCREMENT_UNIT.get(service, "unit")
            self.wrong(name, "invalid_increment", f"A whole number of {unit}s from 1 to {MAX_INCREMENT}, such as 60.")
        elif service in ("sms", "mms") and value != 1:
            self.wrong(name, "invalid_increment", "Messages are charged one by one: 1.")
        return value or 0

    def flag(self, name: str) -> bool:
        value = _flag(self.raw.get(name))
        if value is None:
            self.wrong(name, "invalid_flag", "true or false.")
        return bool(value)


_ANY_PREFIX = re.compile(r"\*|\+?[0-9]{1,15}", re.ASCII)


def parse_line(number: int, raw: Mapping[str, Any], bands: set[str]) -> tuple[RateLine | None, list[LineError]]:
    """One line from CSV text or JSON values; every wrong field is reported, not only the first."""
    fields = _LineFields(number, raw)
    prefix = fields.text(
        "prefix", _ANY_PREFIX, "invalid_prefix", "An E.164 prefix: 1 to 15 digits (a leading + is allowed), or *."
    ).removeprefix("+")
    zone = fields.text("zone", _ZONE, "invalid_zone", "A zone name: 1 to 64 letters, digits, spaces, _ . , ( ) / + -")
    service = fields.text("service", _SERVICE, "invalid_service", "One of voice, sms, mms, data.").lower()
    connect_fee = fields.money("connect_fee", default=Decimal(0))
    price = fields.money("price", default=None)
    first, next_ = fields.increment("first_increment", service), fields.increment("next_increment", service)
    band = _text(raw.get("time_band")) or None
    if band is not None and band not in bands:
        known = ", ".join(sorted(bands)) or "none"
        fields.wrong("time_band", "unknown_time_band", f"Not a band of this version's time bands (bands: {known}).")
    roaming = (_text(raw.get("roaming")) or "").lower() or None
    if roaming is not None and roaming not in ROAMING_ZONES:
        fields.wrong("roaming", "invalid_roaming", "eu or world (where the subscriber roams), or empty for home.")
    zero_rated, premium = fields.flag("zero_rated"), fields.flag("premium")
    cap = fields.money("premium_cap", default=None)
    if cap is not None and not premium:
        fields.wrong("premium_cap", "invalid_premium_cap", "Only a premium line has a cap: set premium or drop it.")
    if zero_rated and premium:
        fields.wrong("premium", "invalid_premium", "A line is zero-rated or premium, not both.")
    if fields.errors or connect_fee is None or price is None:
        return None, fields.errors
    line = RateLine(
        prefix=prefix,
        zone=zone,
        service=service,
        connect_fee=connect_fee,
        price=price,
        first_increment=first,
        next_increment=next_,
        time_band=band,
        zero_rated=zero_rated,
        premium=premium,
        premium_cap=cap,
        roaming=roaming,
    )
    return line, []


_RETAIL_ROAMING = (
    "Roaming lines belong on a wholesale card: a retail card prices usage at home, and roaming beyond the "
    "allowances is priced by the offer's usage prices."
)


@dataclass
class LineReport:
    """What checking a version's lines found: the good lines, and the first errors with their total count."""

    lines: list[RateLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0

    def add(self, errors: Iterable[LineError]) -> None:
        for error in errors:
            self.error_count += 1
            if len(self.errors) < MAX_LINE_ERRORS:
                self.errors.append(error)


def check_lines(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    bands: set[str],
    *,
    report: LineReport | None = None,
    roaming_allowed: bool = True,
) -> LineReport:
    """Every line checked, then the version as a whole: one line per prefix, service, band and roaming zone."""
    report = report if report is not None else LineReport()
    seen: dict[tuple[str, str, str | None, str | None], int] = {}
    for number, raw in rows:
        line, errors = parse_line(number, raw, bands)
        report.add(errors)
        if line is None:
            continue
        if line.roaming and not roaming_allowed:
            report.add([LineError(number, "roaming", "roaming_on_retail_card", _RETAIL_ROAMING)])
            continue
        key = (line.service, line.prefix, line.time_band, line.roaming)
        first_seen = seen.get(key)
        if first_seen is not None:
            band = f" in band {line.time_band}" if line.time_band else ""
            band += f" roaming in {line.roaming}" if line.roaming else ""
            report.add(
                [
                    LineError(
                        number,
                        "prefix",
                        "overlapping_prefix",
                        f"Prefix {line.prefix} already has a {line.service} rate{band} on line {first_seen}.",
                    )
                ]
            )
            continue
        seen[key] = number
        report.lines.append(line)
    return report


# Compiling and pricing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledLine:
    """A line with its money as integers of micro-units and its increments in metered units."""

    line: RateLine
    connect_micro: int
    price_micro: int
    cap_micro: int | None
    first_units: int
    next_units: int


@dataclass
class CompiledVersion:
    """One version's prefix index and time bands, ready to price events without touching the database."""

    version_id: str
    number: int
    effective_from: dt.datetime
    effective_to: dt.datetime | None
    timezone: ZoneInfo
    windows: list[BandWindow]
    # (service, roaming zone or None) -> prefix ("" for the default) -> band (None for any time) -> line
    index: dict[tuple[str, str | None], dict[str, dict[str | None, CompiledLine]]]
    # (service, roaming zone or None) -> the prefix lengths present, longest first
    lengths: dict[tuple[str, str | None], list[int]]

    def band_at(self, local: dt.datetime) -> str | None:
        minute = local.hour * 60 + local.minute
        weekday = local.isoweekday()
        for window in self.windows:
            if window.contains(weekday, minute):
                return window.band
        return None

    def match(self, service: str, digits: str, band: str | None, roaming: str | None = None) -> CompiledLine | None:
        """The line for the event: its roaming zone's lines first (when roaming), then the home lines."""
        if roaming is not None:
            found = self._match((service, roaming), digits, band)
            if found is not None:
                return found
        return self._match((service, None), digits, band)

    def _match(self, key: tuple[str, str | None], digits: str, band: str | None) -> CompiledLine | None:
        by_prefix = self.index.get(key)
        if not by_prefix:
            return None
        for length in self.lengths[key]:
            if length > len(digits):
                continue
            lines = by_prefix.get(digits[:length])
            if lines is None:
                continue
            found = lines.get(band) if band is not None else None
            if found is None:
                found = lines.get(None)
            if found is not None:
                return found
        return None


def _micro(amount: Decimal) -> int:
    return int(amount.scaleb(6))


def compile_version(
    lines: Iterable[RateLine],
    windows: Sequence[BandWindow],
    tz: ZoneInfo,
    *,
    version_id: str = "",
    number: int = 1,
    effective_from: dt.datetime | None = None,
    effective_to: dt.datetime | None = None,
) -> CompiledVersion:
    """Index a version's checked lines by service and prefix; done once per published version."""
    index: dict[tuple[str, str | None], dict[str, dict[str | None, CompiledLine]]] = {}
    for line in lines:
        compiled = CompiledLine(
            line=line,
            connect_micro=_micro(line.connect_fee),
            price_micro=_micro(line.price),
            cap_micro=_micro(line.premium_cap) if line.premium_cap is not None else None,
            first_units=line.first_increment * UNITS_PER_INCREMENT[line.service],
            next_units=line.next_increment * UNITS_PER_INCREMENT[line.service],
        )
        key = "" if line.prefix == DEFAULT_PREFIX else line.prefix
        index.setdefault((line.service, line.roaming), {}).setdefault(key, {})[line.time_band] = compiled
    lengths = {found: sorted({len(p) for p in by_prefix}, reverse=True) for found, by_prefix in index.items()}
    return CompiledVersion(
        version_id=version_id,
        number=number,
        effective_from=effective_from or dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        effective_to=effective_to,
        timezone=tz,
        windows=list(windows),
        index=index,
        lengths=lengths,
    )


@dataclass
class CompiledCard:
    """A card's published versions in date order, each in effect until its end or the next one's start."""

    currency: str
    rounding_mode: str
    precision: int
    versions: list[CompiledVersion]
    _starts: list[dt.datetime] = field(init=False)
    _ends: list[dt.datetime | None] = field(init=False)

    def __post_init__(self) -> None:
        self.versions = sorted(self.versions, key=lambda v: v.effective_from)
        self._starts = [v.effective_from for v in self.versions]
        ends: list[dt.datetime | None] = []
        for position, version in enumerate(self.versions):
            following = self.versions[position + 1].effective_from if position + 1 < len(self.versions) else None
            end = version.effective_to
            if following is not None and (end is None or following < end):
                end = following
            ends.append(end)
        self._ends = ends

    def version_at(self, instant: dt.datetime) -> CompiledVersion:
        position = bisect.bisect_right(self._starts, instant) - 1
        if position < 0 or (self._ends[position] is not None and instant >= self._ends[position]):  # type: ignore[operator]
            raise PricingError(
                "no_version_in_effect",
                f"No published version of the rate card is in effect at {instant.isoformat()}.",
            )
        return self.versions[position]


@dataclass(frozen=True)
class PricedEvent:
    """An event priced, with every step that led to its amount."""

    version_id: str
    version_number: int
    service: str
    called: str | None
    started_at: dt.datetime
    local_start: dt.datetime
    time_band: str | None
    line: RateLine
    quantity: int
    billed_quantity: int
    currency: str
    rounding_mode: str
    precision: int
    # The exact amount is numerator / denominator currency units, before the cap and rounding.
    numerator: int
    denominator: int
    capped: bool
    amount: Decimal
    # The zone the event was made in while roaming (eu, world), None at home.
    roaming: str | None = None

    @property
    def prefix(self) -> str:
        return self.line.prefix

    @property
    def zone(self) -> str:
        return self.line.zone

    @property
    def unrounded_amount(self) -> Decimal:
        """The amount before rounding (after the cap): exact when it has at most 40 significant digits."""
        with localcontext() as ctx:
            ctx.prec = 40
            return (Decimal(self.numerator) / Decimal(self.denominator)).normalize()

    @property
    def reason(self) -> str:
        if self.line.zero_rated:
            return "zero_rated"
        if self.quantity == 0:
            return "nothing_used"
        if self.capped:
            return "premium_capped"
        return "rated"

    @property
    def _roaming(self) -> str:
        return f", roaming in {self.line.roaming}," if self.line.roaming else ""

    @property
    def roaming_note(self) -> str:
        """Which lines priced an event made while roaming: its zone's roaming lines, or the home lines."""
        if self.roaming is None:
            return ""
        if self.line.roaming:
            return f"Roaming in {self.roaming}: the {self.roaming} roaming rate. "
        return f"Roaming in {self.roaming}: no {self.roaming} roaming rate on the card, the home rate. "

    def explanation(self) -> str:
        """The calculation in words, as a person checks it."""
        line, service = self.line, self.service
        if line.zero_rated:
            return f"Prefix {line.prefix} ({line.zone}){self._roaming} is zero-rated: nothing to pay."
        if self.quantity == 0:
            return "Quantity 0 (an unanswered call, an empty session): nothing to pay, not even the connect fee."
        text = (
            f"{self.roaming_note}{self.quantity} {METERED_UNIT[service]}(s) billed as {self.billed_quantity} "
            f"({line.first_increment}/{line.next_increment} {INCREMENT_UNIT[service]} increments); "
            f"{line.connect_fee} connect fee + {line.price} per {PRICED_UNIT[service]} x {self.billed_quantity} / "
            f"{UNITS_PER_PRICED_UNIT[service]} = {self.unrounded_amount}"
        )
        if self.capped:
            text += f" (capped at the premium cap {line.premium_cap})"
        return text + f", rounded {self.rounding_mode} to {self.precision} decimals: {self.amount} {self.currency}."


def billed_units(quantity: int, first: int, next_: int) -> int:
    """The quantity rounded up to the first increment, then to whole next increments; 0 stays 0."""
    if quantity <= 0:
        return 0
    if quantity <= first:
        return first
    return first + -(-(quantity - first) // next_) * next_


def round_fraction(numerator: int, denominator: int, precision: int, mode: str) -> Decimal:
    """numerator / denominator (both >= 0) rounded to `precision` decimals with the mode, on integers."""
    quotient, remainder = divmod(numerator * 10**precision, denominator)
    if remainder:
        if mode == "up":
            quotient += 1
        elif mode == "half_up":
            quotient += 2 * remainder >= denominator
        elif mode == "half_even":
            twice = 2 * remainder
            quotient += twice > denominator or (twice == denominator and quotient % 2 == 1)
        elif mode != "down":
            raise ValueError(f"unknown rounding mode {mode!r}")
    return Decimal(quotient).scaleb(-precision)


def called_digits(called: str | None) -> str:
    """The called number's digits (E.164 with or without +); "" when there is none (data sessions)."""
    if called is None or called == "":
        return ""
    match = _CALLED.fullmatch(called)
    if match is None:
        raise PricingError("invalid_called_number", f"{called!r} is not an E.164 number such as +33612345678.")
    return match[1]


def price(
    card: CompiledCard,
    *,
    service: str,
    called: str | None,
    started_at: dt.datetime,
    quantity: int,
    roaming: str | None = None,
) -> PricedEvent:
    """Price one event: `quantity` in seconds (voice), messages (sms, mms) or bytes (data); `roaming`: the zone the
    subscriber roams in (eu, world), None at home."""
    if started_at.tzinfo is None:
        raise ValueError("started_at must be timezone-aware")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity must be a whole number of at least 0, not {quantity!r}")
    if service not in UNITS_PER_PRICED_UNIT:
        raise ValueError(f"unknown service {service!r}")
    if roaming is not None and roaming not in ROAMING_ZONES:
        raise ValueError(f"unknown roaming zone {roaming!r}")
    digits = called_digits(called)
    version = card.version_at(started_at)
    local = started_at.astimezone(version.timezone)
    band = version.band_at(local) if version.windows else None
    compiled = version.match(service, digits, band, roaming)
    if compiled is None:
        where = f" roaming in {roaming} or at home" if roaming else ""
        raise PricingError(
            "no_matching_rate",
            f"Version {version.number} has no {service} rate{where} for {called or 'this event'} "
            f"(no prefix of it and no default * line{f' in band {band}' if band else ''}).",
        )
    line = compiled.line
    billed = billed_units(quantity, compiled.first_units, compiled.next_units)
    unit = UNITS_PER_PRICED_UNIT[service]
    denominator = unit * _MICRO
    capped = False
    if line.zero_rated or billed == 0:
        numerator = 0
    else:
        numerator = compiled.connect_micro * unit + compiled.price_micro * billed
        if compiled.cap_micro is not None and numerator > compiled.cap_micro * unit:
            numerator, capped = compiled.cap_micro * unit, True
    amount = round_fraction(numerator, denominator, card.precision, card.rounding_mode)
    return PricedEvent(
        version_id=version.version_id,
        version_number=version.number,
        service=service,
        called=called,
        started_at=started_at,
        local_start=local,
        time_band=band,
        line=line,
        quantity=quantity,
        billed_quantity=billed,
        currency=card.currency,
        rounding_mode=card.rounding_mode,
        precision=card.precision,
        numerator=numerator,
        denominator=denominator,
        capped=capped,
        amount=amount,
        roaming=roaming,
    )


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant a local day begins (where midnight is skipped by a DST change, the day's first instant)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(dt.UTC)
