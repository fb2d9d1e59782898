"""Usage records and allowance balances; billing runs, invoices and their lines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import Base, ExactAmount, JSONValue, TenantOwned, utcnow

# "api", or "file:" and a usage file's storage key (at most 500 characters): whole, so no two files share one.
SOURCE_LENGTH = 512
_UNBILLED = "invoice_id IS NULL AND overage_quantity > 0"
BUCKET_FILLFACTOR = 70


class UsageRecord(TenantOwned, Base):
    """One rated usage event; `record_id` is the sender's id, so a record sent twice counts once."""

    __tablename__ = "usage_records"
    tenant_id_index = False  # (tenant_id, record_id) leads with the tenant
    __table_args__ = (
        UniqueConstraint("tenant_id", "record_id"),
        # By line: summaries, the listing, the re-rating's replay (every index is paid by every rated record).
        Index("ix_usage_records_line", "subscription_id", "period", "service", "started_at"),
        # Only what is left to bill: most records stay within an allowance and are never in it.
        Index(
            "ix_usage_records_unbilled",
            "subscription_id",
            "period",
            postgresql_where=text(_UNBILLED),
            sqlite_where=text(_UNBILLED),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(128))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    msisdn: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[dt.datetime] = mapped_column()
    quantity: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(7))
    allowance_used: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[Decimal] = mapped_column()
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    # The record's line in its usage file (NULL for the API's records): with `source`, which record of which file.
    position: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # What explains the amount, as rated: the offer, the allowance left before, the unit price and the
    # amount before rounding. NULL on records rated before they were kept.
    offer_id: Mapped[str | None] = mapped_column(String(40))
    allowance_before: Mapped[int | None] = mapped_column(BigInteger)
    overage_unit_price: Mapped[Decimal | None] = mapped_column()
    amount_exact: Mapped[Decimal | None] = mapped_column(ExactAmount())
    # The invoice that billed this record's overage; NULL until billed, whatever period it belongs to.
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    # Where it happened (home | eu | world, from the visited network's MCC-MNC) and what it reached.
    zone: Mapped[str] = mapped_column(String(10), default="home", server_default="home")
    visited_plmn: Mapped[str | None] = mapped_column(String(7))
    called_number: Mapped[str | None] = mapped_column(String(20))
    rating_group: Mapped[int | None] = mapped_column(BigInteger)
    offer_version_id: Mapped[str | None] = mapped_column(String(40))
    # The retail rate card line that priced the overage (NULL when the offer's usage prices did).
    billed_quantity: Mapped[int | None] = mapped_column(BigInteger)
    rate_card_version_id: Mapped[str | None] = mapped_column(String(40))
    rate_prefix: Mapped[str | None] = mapped_column(String(16))
    time_band: Mapped[str | None] = mapped_column(String(32))
    # The whole quantity priced on the host network's wholesale card; NULL when it has none for the record.
    wholesale_amount: Mapped[Decimal | None] = mapped_column()
    wholesale_exact: Mapped[Decimal | None] = mapped_column(ExactAmount())
    wholesale_rate_version_id: Mapped[str | None] = mapped_column(String(40))
    wholesale_prefix: Mapped[str | None] = mapped_column(String(16))
    # The buckets the record consumed, [[bucket id, quantity], ...] in the order consumed; NULL when none.
    bucket_parts: Mapped[list[Any] | None] = mapped_column(JSONValue)
    # It took an unlimited bucket past its fair use.
    throttled: Mapped[bool] = mapped_column(default=False, server_default=false())
    rerated_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Paid from the line's prepaid money balance when rated: never on an invoice.
    prepaid: Mapped[bool] = mapped_column(default=False, server_default=false())


class UsageRejection(TenantOwned, Base):
    """A usage record that could not be rated, kept with its reason until it is fixed and re-rated or discarded."""

    __tablename__ = "usage_rejections"
    __table_args__ = (
        # One open rejection per sender's record id: a record sent again, still wrong, updates it.
        Index(
            "uq_usage_rejections_open_record",
            "tenant_id",
            "record_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        Index("ix_usage_rejections_status", "tenant_id", "status", "reason_code"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(128))
    # "api", or "file:<storage key>" for a usage file
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    # The record's index in its batch, or its line number in its file.
    position: Mapped[int | None] = mapped_column(Integer)
    # The record as received (line, service, start, quantity), and the fields changed since to fix it.
    raw: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    fixes: Mapped[dict[str, Any]] = mapped_column(JSONValue, default=dict)
    reason_code: Mapped[str] = mapped_column(String(40))
    reason_detail: Mapped[str] = mapped_column(String(500))
    # open -> fixed (re-rated) | duplicate (the record was accepted meanwhile) | discarded
    status: Mapped[str] = mapped_column(String(20), default="open")
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    usage_record_id: Mapped[str | None] = mapped_column(String(40))


class BalanceBucket(TenantOwned, Base):
    """Units a line may use before it pays per use: a plan's allowance for a period, an add-on, a rollover.

    Quantities are metered units (bytes, seconds, messages). `granted` NULL is unlimited (`fair_use`
    then says when the line is throttled). `origin_key` names where the bucket comes from, unique per
    line, so a bucket made twice (two workers, a retried job) is made once:
    "plan:<period>:<service>:<zone>", "rollover:<period>:<service>:<zone>", "purchase:<purchase id>:<service>:<zone>".
    Buckets are consumed by `priority` (lower first), then earliest `valid_to`.
    """

    __tablename__ = "balance_buckets"
    tenant_id_index = False  # looked up by line; offboarding's one delete by tenant may scan
    __table_args__ = (
        UniqueConstraint("subscription_id", "origin_key"),
        Index("ix_balance_buckets_line", "subscription_id", "service", "valid_to"),
        # Rating rewrites a bucket's `used` over and over, and no index holds it: pages kept 30 % free let
        # PostgreSQL write each new version beside the old one, without touching the indexes (a HOT update).
        {"postgresql_with": {"fillfactor": BUCKET_FILLFACTOR}},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    service: Mapped[str] = mapped_column(String(10))
    # home | eu | world: where the usage it covers happens
    zone: Mapped[str] = mapped_column(String(10))
    # plan | rollover | addon | topup
    origin: Mapped[str] = mapped_column(String(20))
    origin_key: Mapped[str] = mapped_column(String(120))
    offer_version_id: Mapped[str | None] = mapped_column(String(40))
    purchase_id: Mapped[str | None] = mapped_column(String(40))
    # The billing period (YYYY-MM) of a plan or rollover bucket.
    period: Mapped[str | None] = mapped_column(String(7))
    granted: Mapped[int | None] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    fair_use: Mapped[int | None] = mapped_column(BigInteger)
    # A home bucket that also covers EU roaming (roam like at home), up to `eu_fair_use`; `eu_used` counts it.
    roam_like_at_home: Mapped[bool] = mapped_column(default=False)
    eu_fair_use: Mapped[int | None] = mapped_column(BigInteger)
    eu_used: Mapped[int] = mapped_column(BigInteger, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    valid_from: Mapped[dt.datetime] = mapped_column()
    valid_to: Mapped[dt.datetime] = mapped_column()
    # The highest threshold (50, 80, 100) whose event was sent, so each is sent once.
    notified_percent: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MoneyBalance(TenantOwned, Base):
    """A line's prepaid money. A line that has one is prepaid: its overage is paid from it, never invoiced,
    and online charging grants no more than it covers. `amount` may go below zero only by usage the network
    reported without asking first (offline records); top-ups pay that back first."""

    __tablename__ = "money_balances"
    tenant_id_index = False  # looked up by line
    __table_args__ = (UniqueConstraint("subscription_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpendCap(TenantOwned, Base):
    """The most a line, or all the lines of a customer, may spend beyond their buckets in a billing period.

    Online charging grants no unit past it: `stop` ends the service there (Final-Unit-Action TERMINATE),
    `throttle` restricts it (RESTRICT_ACCESS: the network keeps only what its filter allows, a slow lane or
    the top-up page). Usage reported without asking first is still charged.
    """

    __tablename__ = "spend_caps"
    __table_args__ = (
        UniqueConstraint("subscription_id"),
        UniqueConstraint("customer_id"),
        CheckConstraint("(subscription_id IS NULL) <> (customer_id IS NULL)", name="one_holder"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[Decimal] = mapped_column()
    # stop | throttle
    action: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VoucherBatch(TenantOwned, Base):
    """Top-up vouchers made together (printed on cards, sold in shops): each is worth `amount` once."""

    __tablename__ = "voucher_batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    # active | cancelled (its unused vouchers can no longer be redeemed)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Voucher(TenantOwned, Base):
    """One voucher: only a keyed digest of its code is kept (the code is shown once, when its batch is made)."""

    __tablename__ = "vouchers"
    tenant_id_index = False  # (tenant_id, code_digest) leads with the tenant
    __table_args__ = (UniqueConstraint("tenant_id", "code_digest"), Index("ix_vouchers_batch", "batch_id", "status"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("voucher_batches.id"))
    code_digest: Mapped[str] = mapped_column(String(64))
    last4: Mapped[str] = mapped_column(String(4))
    # unused | redeemed
    status: Mapped[str] = mapped_column(String(20), default="unused")
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    movement_id: Mapped[str | None] = mapped_column(String(40))
    redeemed_at: Mapped[dt.datetime | None] = mapped_column()


class BalanceMovement(TenantOwned, Base):
    """One change of a money balance: a top-up, usage paid from it, a refund; `reference` makes it happen once."""

    __tablename__ = "balance_movements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "reference"),
        Index("ix_balance_movements_line", "subscription_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    # top_up | usage | refund
    kind: Mapped[str] = mapped_column(String(20))
    # Signed: a top-up adds, usage takes away.
    amount: Mapped[Decimal] = mapped_column()
    balance_after: Mapped[Decimal] = mapped_column()
    reference: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(300))
    # How many usage records a usage movement paid for (a batch's, for the line).
    records: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReratingRun(TenantOwned, Base):
    """A period's usage rated again with today's terms and rate cards, line by line in chunks."""

    __tablename__ = "rerating_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    # One line only, or NULL for every line with usage in the period.
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    # pending -> running -> completed | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    records_total: Mapped[int] = mapped_column(Integer, default=0)
    records_done: Mapped[int] = mapped_column(Integer, default=0)
    # The lines to re-rate, fixed when the run starts, and how many chunks of them are done (a restart resumes).
    lines: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    records_changed: Mapped[int] = mapped_column(Integer, default=0)
    adjustments: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class UsageAdjustment(TenantOwned, Base):
    """The difference a re-rating made to a record already invoiced, billed on the next invoice."""

    __tablename__ = "usage_adjustments"
    __table_args__ = (
        UniqueConstraint("rerating_run_id", "usage_record_id"),
        Index("ix_usage_adjustments_record", "usage_record_id"),
        Index("ix_usage_adjustments_unbilled", "subscription_id", "invoice_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    usage_record_id: Mapped[str] = mapped_column(ForeignKey("usage_records.id"))
    rerating_run_id: Mapped[str] = mapped_column(ForeignKey("rerating_runs.id"))
    subscription_id: Mapped[str] = mapped_column(String(40))
    # The usage's own period and service.
    period: Mapped[str] = mapped_column(String(7))
    service: Mapped[str] = mapped_column(String(10))
    # Retail and wholesale deltas: new amount minus what was charged so far (the record and earlier adjustments).
    amount: Mapped[Decimal] = mapped_column()
    wholesale_amount: Mapped[Decimal] = mapped_column()
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UsageFile(Base):
    """A usage file from a host network; a platform table (one file holds many tenants' records)."""

    __tablename__ = "usage_files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    records: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    # A file is read in segments (byte ranges on line boundaries), each a job; a segment's counts and first
    # errors are kept under its number ({"0": {"records": 5000, "accepted": 4990, ...}, ...}) once it has run.
    segments_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    segment_results: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column()


class BillingRun(TenantOwned, Base):
    __tablename__ = "billing_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    # pending -> running -> completed | completed_with_failures; pending | running -> failed -> running (replayed)
    status: Mapped[str] = mapped_column(String(30), default="pending")
    customers_total: Mapped[int] = mapped_column(Integer, default=0)
    customers_done: Mapped[int] = mapped_column(Integer, default=0)
    invoices_created: Mapped[int] = mapped_column(Integer, default=0)
    invoices_existing: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    # Why the run failed: the error of the job that failed past its last retry.
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # The run's customers are split in chunks, each a job; a chunk's counts are kept under its number
    # ({"0": {"customers": 50, "created": 48, "existing": 2, "failures": 0}, ...}) once it has run.
    chunks_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    chunk_results: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class Invoice(TenantOwned, Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "customer_id", "period"), UniqueConstraint("tenant_id", "number"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    billing_run_id: Mapped[str | None] = mapped_column(ForeignKey("billing_runs.id"))
    period: Mapped[str] = mapped_column(String(7))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="issued")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column()
    tax: Mapped[Decimal] = mapped_column()
    tax_rate: Mapped[Decimal] = mapped_column()
    total: Mapped[Decimal] = mapped_column()
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    due_date: Mapped[dt.date] = mapped_column(Date)
    pdf_key: Mapped[str | None] = mapped_column(String(300))


class InvoiceLine(TenantOwned, Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(300))
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    quantity: Mapped[Decimal] = mapped_column()
    unit: Mapped[str] = mapped_column(String(20))
    unit_price: Mapped[Decimal | None] = mapped_column()
    amount: Mapped[Decimal] = mapped_column()
    # The usage's own period when it is earlier than the invoice's (rated after that period was invoiced).
    service_period: Mapped[str | None] = mapped_column(String(7))
