from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvne.esim.identifiers import (
    ActivationCode,
    is_valid_eid,
    is_valid_iccid,
    is_valid_matching_id,
    luhn_check_digit,
    make_eid,
    make_iccid,
    make_imsi,
    new_matching_id,
    normalize_iccid,
)

SPEC_ADDRESS = "SMDP.GSMA.COM"
SPEC_TOKEN = "04386-AGYFT-A74Y8-3F815"
SPEC_OID = "1.3.6.1.4.1.31746"


def test_luhn_check_digit_matches_the_published_iccid_example() -> None:
    assert luhn_check_digit("894433001234567890") == "5"


def test_luhn_check_digit_refuses_anything_but_digits() -> None:
    with pytest.raises(ValueError, match="decimal digits"):
        luhn_check_digit("89443300123456789A")


@pytest.mark.parametrize(
    "iccid",
    ["8944330012345678905", "8947010000123456784F", "8947010000123456784", make_iccid("8944", 7, 20)],
)
def test_is_valid_iccid_accepts_19_and_20_digits_and_f_padding(iccid: str) -> None:
    assert is_valid_iccid(iccid)


def _with_luhn(payload: str) -> str:
    return payload + luhn_check_digit(payload)


@pytest.mark.parametrize(
    ("iccid", "why"),
    [
        ("8944330012345678904", "wrong check digit"),
        (_with_luhn("994433001234567890"), "does not start with 89"),
        (_with_luhn("89443300123456789"), "18 digits"),
        (_with_luhn("894433001234567890123"), "22 digits"),
        ("8947010000123456784f", "lowercase padding"),
        ("8947010000123456784FF", "double padding"),
        ("894701000012345678F4", "F in the middle"),
        ("", "empty"),
    ],
)
def test_is_valid_iccid_rejects_malformed_values(iccid: str, why: str) -> None:
    assert not is_valid_iccid(iccid), why


def test_normalize_iccid_strips_the_f_padding() -> None:
    assert normalize_iccid("8947010000123456784F") == "8947010000123456784"
    assert normalize_iccid("8947010000123456784") == "8947010000123456784"


def test_normalize_iccid_refuses_an_invalid_iccid() -> None:
    with pytest.raises(ValueError, match="not a valid ICCID"):
        normalize_iccid("8947010000123456785F")


def test_make_iccid_zero_pads_the_serial_and_appends_the_luhn_digit() -> None:
    assert make_iccid("8944330", 12345) == _with_luhn("894433000000012345")


def test_make_iccid_refuses_a_serial_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        make_iccid("8944330", 10**11)


@pytest.mark.parametrize(
    ("prefix", "serial", "length"),
    [("9944", 1, 19), ("89", -1, 19), ("89", 1, 18), ("89A", 1, 19), ("8944330012345678901", 0, 19)],
)
def test_make_iccid_refuses_bad_arguments(prefix: str, serial: int, length: int) -> None:
    with pytest.raises(ValueError, match="ICCID"):
        make_iccid(prefix, serial, length)


@given(
    prefix=st.from_regex(r"89[0-9]{0,10}", fullmatch=True),
    length=st.sampled_from([19, 20]),
    data=st.data(),
)
def test_make_iccid_always_gives_a_valid_iccid_holding_its_serial(
    prefix: str, length: int, data: st.DataObject
) -> None:
    serial = data.draw(st.integers(min_value=0, max_value=10 ** (length - 1 - len(prefix)) - 1))
    iccid = make_iccid(prefix, serial, length)
    assert is_valid_iccid(iccid)
    assert len(iccid) == length
    assert iccid.startswith(prefix)
    assert int(iccid[len(prefix) : -1]) == serial


def test_is_valid_eid_accepts_the_gsma_sample_eid() -> None:
    assert is_valid_eid("89049032123451234512345678901235")


@pytest.mark.parametrize(
    "eid",
    [
        "89049032123451234512345678901236",
        "8904903212345123451234567890123",
        "79049032123451234512345678901235",
        "8904903212345123451234567890123A",
    ],
)
def test_is_valid_eid_rejects_bad_check_digits_length_or_prefix(eid: str) -> None:
    assert not is_valid_eid(eid)


@given(
    body=st.from_regex(r"89[0-9]{28}", fullmatch=True),
    position=st.integers(min_value=2, max_value=31),
    shift=st.integers(min_value=1, max_value=9),
)
def test_make_eid_is_valid_and_any_single_digit_change_is_caught(body: str, position: int, shift: int) -> None:
    eid = make_eid(body)
    assert is_valid_eid(eid)
    changed = eid[:position] + str((int(eid[position]) + shift) % 10) + eid[position + 1 :]
    assert not is_valid_eid(changed)


def test_make_imsi_fills_fifteen_digits_for_two_and_three_digit_mncs() -> None:
    assert make_imsi("208", "15", 1) == "208150000000001"
    assert make_imsi("310", "260", 42) == "310260000000042"


@pytest.mark.parametrize(
    ("mcc", "mnc", "msin", "message"),
    [
        ("20", "15", 1, "MCC"),
        ("208", "1", 1, "MNC"),
        ("208", "15", 10**10, "does not fit"),
        ("208", "15", -1, "MSIN"),
    ],
)
def test_make_imsi_refuses_what_is_not_an_imsi(mcc: str, mnc: str, msin: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_imsi(mcc, mnc, msin)


@pytest.mark.parametrize(
    ("value", "valid"), [("", True), (SPEC_TOKEN, True), ("abc", False), ("A$B", False), ("A B", False)]
)
def test_is_valid_matching_id_allows_only_uppercase_alphanumerics_and_dashes(value: str, valid: bool) -> None:
    assert is_valid_matching_id(value) is valid


def test_new_matching_id_is_four_groups_of_five_and_never_repeats() -> None:
    generated = {new_matching_id() for _ in range(200)}
    assert len(generated) == 200
    assert all(re.fullmatch(r"[0-9A-Z]{5}(-[0-9A-Z]{5}){3}", value) for value in generated)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (ActivationCode(SPEC_ADDRESS, SPEC_TOKEN), f"LPA:1${SPEC_ADDRESS}${SPEC_TOKEN}"),
        (
            ActivationCode(SPEC_ADDRESS, SPEC_TOKEN, confirmation_code_required=True),
            f"LPA:1${SPEC_ADDRESS}${SPEC_TOKEN}$$1",
        ),
        (
            ActivationCode(SPEC_ADDRESS, SPEC_TOKEN, SPEC_OID, True),
            f"LPA:1${SPEC_ADDRESS}${SPEC_TOKEN}${SPEC_OID}$1",
        ),
        (ActivationCode(SPEC_ADDRESS, SPEC_TOKEN, SPEC_OID), f"LPA:1${SPEC_ADDRESS}${SPEC_TOKEN}${SPEC_OID}"),
        (ActivationCode(SPEC_ADDRESS, "", SPEC_OID), f"LPA:1${SPEC_ADDRESS}$${SPEC_OID}"),
    ],
)
def test_activation_code_builds_the_sgp22_examples(code: ActivationCode, expected: str) -> None:
    assert code.build() == expected
    assert str(code) == expected
    assert code.build(lpa_prefix=False) == expected.removeprefix("LPA:")


def test_activation_code_parses_spec_examples_with_or_without_the_lpa_prefix() -> None:
    assert ActivationCode.parse(f"1${SPEC_ADDRESS}${SPEC_TOKEN}${SPEC_OID}$1") == ActivationCode(
        SPEC_ADDRESS, SPEC_TOKEN, SPEC_OID, True
    )
    assert ActivationCode.parse(f"LPA:1${SPEC_ADDRESS}${SPEC_TOKEN}$$1") == ActivationCode(
        SPEC_ADDRESS, SPEC_TOKEN, None, True
    )
    assert ActivationCode.parse(f"LPA:1${SPEC_ADDRESS}$") == ActivationCode(SPEC_ADDRESS, "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"LPA:2${SPEC_ADDRESS}$ABC", "AC_Format must be 1"),
        (f"LPA:1${SPEC_ADDRESS}", "needs AC_Format, SM-DP\\+ address and matching id"),
        ("LPA:1$$ABC", "address is empty"),
        (f"LPA:1${SPEC_ADDRESS}$abc", "matching id may only hold"),
        (f"LPA:1${SPEC_ADDRESS}$ABC$$0", "flag must be '1'"),
        (f"LPA:1${SPEC_ADDRESS}$ABC${SPEC_OID}$1$X", "more than 5"),
        (f"LPA:1${SPEC_ADDRESS}$ABC$not-an-oid", "OID"),
        ("LPA:1$smdp example.com$ABC", "FQDN"),
        (f"LPA:1${SPEC_ADDRESS}$" + "A" * 240, "longer than 255"),
    ],
)
def test_activation_code_parse_explains_what_is_malformed(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ActivationCode.parse(text)


def test_activation_code_refuses_to_build_a_payload_over_255_characters() -> None:
    with pytest.raises(ValueError, match="maximum is 255"):
        ActivationCode(SPEC_ADDRESS, "A" * 240)


_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)


@given(
    address=st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    matching_id=st.from_regex(r"[0-9A-Z-]{0,40}", fullmatch=True),
    oid=st.none() | st.lists(st.integers(0, 99999), min_size=2, max_size=8).map(lambda arcs: ".".join(map(str, arcs))),
    cc_required=st.booleans(),
    with_prefix=st.booleans(),
)
def test_activation_code_build_then_parse_gives_back_the_same_code(
    address: str, matching_id: str, oid: str | None, cc_required: bool, with_prefix: bool
) -> None:
    code = ActivationCode(address, matching_id, oid, cc_required)
    assert ActivationCode.parse(code.build(lpa_prefix=with_prefix)) == code
