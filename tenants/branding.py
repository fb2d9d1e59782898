"""How a tenant shows itself to its subscribers: its brand, with defaults until the founder sets one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.tenants.models import Tenant, TenantBrand

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
