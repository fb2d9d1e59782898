"""Self-service sign-up, the tenants' side: a free slug from the brand's name, defaults from the country,
and the founder's owner account with its brand and verification e-mail.

The tenant itself (number range, eSIM pool) is made by the layer that can reach provisioning; this
module only needs the tenant row.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import unicodedata
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from babel.core import get_global
from babel.numbers import get_territory_currencies
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mvne.infra.ids import new_id
from mvne.tenants import credentials, roles, staff
from mvne.tenants.models import StaffUser, Tenant, TenantBrand
from mvne.tenants.service import record_event

SLUG_MAX = 40
# Slugs kept for the platform's own use (future host names and paths), never a brand's.
RESERVED_SLUGS = frozenset(
    {"admin", "api", "app", "console", "docs", "mail", "operator", "platform", "static", "status", "support", "www"}
)


def slug_base(brand_name: str) -> str:
    """The brand's name as a slug: ASCII lower case, digits and single hyphens ("Nimbus Mobile" -> "nimbus-mobile")."""
    text = unicodedata.normalize("NFKD", brand_name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:SLUG_MAX].strip("-")
    return text or "brand"


def free_slug(session: Session, brand_name: str) -> str:
    """A slug no tenant has: the brand's, else with the first free suffix (`nimbus-2`, `nimbus-3`, ...)."""
    base = slug_base(brand_name)
    taken = set(session.scalars(select(Tenant.slug).where(or_(Tenant.slug == base, Tenant.slug.like(f"{base}-%")))))
    taken |= RESERVED_SLUGS
    if base not in taken:
        return base
    for n in range(2, 1000):
        candidate = f"{base}-{n}"
        if candidate not in taken:
            return candidate
    return f"{base}-{secrets.token_hex(4)}"


@functools.cache
def _zone_table() -> dict[str, str]:
    """Country -> its first zone in the tz database's zone.tab (the most populous one, by the file's rule)."""
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        if path.is_file():
            zones: dict[str, str] = {}
            for line in path.read_text().splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) >= 3:
                    zones.setdefault(parts[0], parts[2])
            return zones
    return {}


def default_timezone(country: str) -> str | None:
    """The time zone a tenant of `country` gets when it names none: the country's most populous zone."""
    zone = _zone_table().get(country)
    if zone is None:
        candidates = get_global("territory_zones").get(country, [])
        zone = candidates[0] if len(candidates) == 1 else None
    return zone if zone in zoneinfo.available_timezones() else None


@functools.cache
def currencies_in_use() -> frozenset[str]:
    """ISO 4217 codes that are legal tender somewhere today (no historical, fund or test codes)."""
    today = dt.date.today()  # noqa: DTZ011 (a calendar date is all CLDR's tender periods need)
    codes: set[str] = set()
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, start_date=today, tender=True))
    return frozenset(code for code in codes if len(code) == 3 and code.isalpha() and code.isupper())


@dataclass(frozen=True)
class Founder:
    user: StaffUser
    brand: TenantBrand


def check_founder_password(password: str, *, email: str, company: str, brand_name: str, name: str) -> None:
    """422 `weak_password` before anything is written: a password made of the sign-up's own words is weak."""
    credentials.check_password(password, user_inputs=(email, company, brand_name, name))


def register_founder(
    session: Session,
    *,
    tenant: Tenant,
    email: str,
    name: str,
    password: str,
    company: str,
    brand_name: str,
    public_url: str,
) -> Founder:
    """The new tenant's owner (e-mail not verified yet), its brand, and the verification e-mail."""
    brand = TenantBrand(id=new_id("brd"), tenant_id=tenant.id, display_name=brand_name)
    session.add(brand)
    user = staff.create_staff_user(
        session,
        tenant_id=tenant.id,
        email=email,
        name=name,
        role=roles.OWNER,
        password=password,
        verified=False,
        user_inputs=(company, brand_name),
    )
    record_event(
        session,
        "staff.joined",
        user.id,
        {"email": user.email, "role": user.role, "via": "signup"},
        tenant_id=tenant.id,
    )
    staff.send_verification(session, user, public_url=public_url, brand_name=brand_name)
    return Founder(user, brand)
