"""Array parameters sent as one text value come back from PostgreSQL exactly as they were given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    any_,
    create_engine,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.pool import NullPool

from mvne.infra.db import UTCDateTime, array_param, pg_array
from mvne.infra.settings import Settings


@pytest.fixture(scope="module")
def engine(postgres_settings: Settings) -> Iterator[Engine]:
    engine = create_engine(postgres_settings.database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _round_trip(engine: Engine, values: list[Any], element: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.scalar(select(array_param(values, ARRAY(element)))))


# Text PostgreSQL can hold: anything but NUL.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(TEXT, st.none()), max_size=8))
def test_strings_with_quotes_braces_commas_and_nulls_come_back_unchanged(engine: Engine, values: list[Any]) -> None:
    assert _round_trip(engine, values, String()) == values


def test_the_word_null_and_empty_strings_stay_strings(engine: Engine) -> None:
    values = ["NULL", "", "null", " ", "{}", 'a"b', "c\\d", "e,f"]
    assert _round_trip(engine, values, String()) == values
    assert pg_array(["usg_01", "usg_02"]) == '{"usg_01","usg_02"}'


def test_numbers_booleans_and_instants(engine: Engine) -> None:
    assert _round_trip(engine, [1, -2, 10**15, None], BigInteger()) == [1, -2, 10**15, None]
    assert _round_trip(engine, [Decimal("0.000001"), Decimal("-12.5"), None], Numeric(20, 6)) == [
        Decimal("0.000001"),
        Decimal("-12.500000"),
        None,
    ]
    assert _round_trip(engine, [True, False, None], Boolean()) == [True, False, None]
    paris = dt.timezone(dt.timedelta(hours=1))
    instants = [dt.datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, tzinfo=paris)]
    assert _round_trip(engine, instants, UTCDateTime()) == [i.astimezone(dt.UTC) for i in instants]
    assert _round_trip(engine, [], String()) == []


def test_repeated_values_are_written_each_in_its_place_and_equal_but_different_ones_apart() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert pg_array([start, None, start, True]) == ('{"2026-03-01T00:00:00+00:00",NULL,"2026-03-01T00:00:00+00:00",t}')
    # Equal to Python, not the same text: an amount keeps its scale, and True is not the number 1.
    assert pg_array([Decimal("1.0"), Decimal("1.00"), Decimal("1.0")]) == "{1.0,1.00,1.0}"
    assert pg_array([1, True, 1, False, 0]) == "{1,t,1,f,0}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.sampled_from(
            [
                dt.datetime(2026, 3, 29, 1, tzinfo=dt.UTC),
                dt.datetime(2026, 3, 29, 3, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                dt.datetime(2026, 10, 25, 2, 30, tzinfo=dt.UTC),
                None,
            ]
        ),
        max_size=10,
    )
)
def test_repeated_instants_come_back_unchanged(engine: Engine, values: list[Any]) -> None:
    assert _round_trip(engine, values, UTCDateTime()) == [v and v.astimezone(dt.UTC) for v in values]


def test_a_naive_instant_or_an_unknown_type_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="naive"):
        pg_array([dt.datetime(2026, 1, 1)])  # noqa: DTZ001 (the point of the test)
    with pytest.raises(TypeError):
        pg_array([object()])


def test_the_server_reads_an_array_once_per_statement_not_once_per_row(engine: Engine) -> None:
    """The text is the array parameter itself: a conversion from a string left in the plan runs for every row
    scanned (a batch's line look-up then took seconds on a table of 40,000 lines)."""
    keys = [f"sub_{n:05d}" for n in range(50)]
    table = Table("probe", MetaData(), Column("id", String(40)), Column("n", BigInteger()))
    with engine.connect() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE probe (id VARCHAR(40), n BIGINT)"))
        connection.execute(text("SET plan_cache_mode = force_generic_plan"))
        statements = [
            select(table.c.n).where(table.c.id == any_(array_param(keys, ARRAY(String(40))))),
            select(table.c.n).where(table.c.n == any_(array_param([1, 2], ARRAY(BigInteger())))),
        ]
        for statement in statements:
            compiled = statement.compile(connection)
            plan = connection.exec_driver_sql(f"EXPLAIN VERBOSE {compiled}", compiled.params).scalars().all()
            assert not any("cstring" in step for step in plan), plan
            assert connection.execute(statement).all() == []
