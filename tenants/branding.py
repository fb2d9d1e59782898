"""How a tenant shows itself to its subscribers: its brand, with defaults until the founder sets one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.infra.storage import ObjectNotFound, Storage
from mvne.tenants import identifiers
from mvne.tenants.errors import BrandNotFound, InvalidIdentifier, LogoNotAnImage, LogoNotFound, LogoTooLarge
from mvne.tenants.models import Tenant, TenantBrand
from mvne.tenants.service import record_event

DEFAULT_PRIMARY = "#1f4fd1"
DEFAULT_ACCENT = "#f5a623"


@dataclass(frozen=True)
class BrandView:
    """What a page or an e-mail needs of the brand; `logo_key` is a storage key (None: no logo yet)."""

    tenant_id: str
    display_name: str
    primary_color: str
    accent_color: str
    logo_key: str | None
    logo_content_type: str | None
    support_email: str | None
    support_phone: str | None
    support_url: str | None


def brand_of(session: Session, tenant: Tenant) -> BrandView:
    """The tenant's brand; its name and the platform's colours while it has set none."""
    brand = session.scalar(
        select(TenantBrand).where(TenantBrand.tenant_id == tenant.id).execution_options(all_tenants=True)
    )
    if brand is None:
        return BrandView(tenant.id, tenant.name, DEFAULT_PRIMARY, DEFAULT_ACCENT, None, None, None, None, None)
    return BrandView(
        tenant_id=tenant.id,
        display_name=brand.display_name,
        primary_color=brand.primary_color,
        accent_color=brand.accent_color,
        logo_key=brand.logo_key,
        logo_content_type=brand.logo_content_type,
        support_email=brand.support_email,
        support_phone=brand.support_phone,
        support_url=brand.support_url,
    )


# Logos are shown on pages and in e-mails we serve: raster images only, told by their first bytes.
# SVG is refused whatever it is sent as: it is a document that can carry scripts.
MAX_LOGO_BYTES = 512 * 1024
LOGO_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def sniff_image(data: bytes) -> str | None:
    """The content type the bytes are (PNG, JPEG or WebP by their signature), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def find_brand(session: Session) -> TenantBrand | None:
    """The session's tenant's brand row, or None while it has set none."""
    return session.scalar(select(TenantBrand))


def get_brand(session: Session) -> TenantBrand:
    brand = find_brand(session)
    if brand is None:
        raise BrandNotFound("This tenant has no brand yet: PUT /v1/tenant/brand sets it.")
    return brand


def set_brand(session: Session, tenant: Tenant, values: dict[str, Any]) -> TenantBrand:
    """Create or replace the brand (its logo is kept); the support phone is stored in E.164 form."""
    phone = values.get("support_phone")
    if phone is not None:
        try:
            phone = identifiers.check_phone(phone, tenant.country)
        except identifiers.IdentifierError as error:
            raise InvalidIdentifier(str(error), errors={"support_phone": [str(error)]}) from None
    fields = {
        "display_name": values["display_name"],
        "primary_color": values["primary_color"].lower(),
        "accent_color": values["accent_color"].lower(),
        "support_email": values.get("support_email"),
        "support_phone": phone,
        "support_url": values.get("support_url"),
    }
    brand = find_brand(session)
    created = brand is None
    if brand is None:
        brand = TenantBrand(id=new_id("brd"), **fields)
        session.add(brand)
    else:
        for name, value in fields.items():
            setattr(brand, name, value)
        brand.updated_at = utcnow()
    session.flush()
    record_event(session, "tenant.brand_updated", brand.id, {"display_name": brand.display_name, "created": created})
    return brand


def store_logo(session: Session, storage: Storage, tenant: Tenant, data: bytes, content_type: str) -> TenantBrand:
    """Keep a PNG, JPEG or WebP logo of at most 512 KiB; the bytes must be what the content type says.

    The object's key holds a hash of its bytes, so a page never shows a stale logo from a cache. A
    tenant with no brand yet gets one named after it, in the platform's colours.
    """
    if len(data) > MAX_LOGO_BYTES:
        raise LogoTooLarge(
            f"The logo is {len(data)} bytes; the limit is {MAX_LOGO_BYTES} bytes (512 KiB). Send a smaller image."
        )
    declared = content_type.split(";", 1)[0].strip().lower()
    found = sniff_image(data)
    if declared not in LOGO_TYPES or found is None or found != declared:
        what = f"a {found} image" if found else "not a PNG, JPEG or WebP image"
        raise LogoNotAnImage(
            f"The body is {what}, sent as {declared or 'no content type'}: send the image's bytes with "
            "Content-Type image/png, image/jpeg or image/webp (SVG is not accepted).",
            errors={"logo": ["A PNG, JPEG or WebP image, its Content-Type matching its bytes."]},
        )
    key = f"tenants/{tenant.id}/brand/logo-{hashlib.sha256(data).hexdigest()[:16]}.{LOGO_TYPES[found]}"
    storage.put(key, data, content_type=found)
    brand = find_brand(session)
    if brand is None:
        brand = TenantBrand(id=new_id("brd"), display_name=tenant.name[:100])
        session.add(brand)
    brand.logo_key = key
    brand.logo_content_type = found
    brand.updated_at = utcnow()
    session.flush()
    record_event(session, "tenant.logo_updated", brand.id, {"content_type": found, "bytes": len(data)})
    return brand


def read_logo(session: Session, storage: Storage) -> tuple[bytes, str]:
    """The logo's bytes and content type."""
    brand = find_brand(session)
    if brand is None or brand.logo_key is None or brand.logo_content_type is None:
        raise LogoNotFound("This tenant has no logo yet: PUT /v1/tenant/brand/logo uploads one.")
    try:
        return storage.get(brand.logo_key), brand.logo_content_type
    except ObjectNotFound:
        raise LogoNotFound("This tenant's logo is missing from storage: upload it again.") from None
