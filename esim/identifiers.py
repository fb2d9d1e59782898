"""SIM and eSIM identifiers (ICCID, EID, IMSI, matchingId) and the SGP.22 activation code."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_DIGITS = re.compile(r"[0-9]+")
_ICCID = re.compile(r"[0-9]{19}(?:[0-9]|F)?")
_EID = re.compile(r"[0-9]{32}")
_MATCHING_ID = re.compile(r"[0-9A-Z-]*")
_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FQDN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_MATCHING_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# SGP.22 4.1: the QR payload ("LPA:" + AC) is at most 255 characters; applying the limit to the
# prefixed form keeps every code we accept printable as a QR code.
ACTIVATION_CODE_MAX_LENGTH = 255
LPA_PREFIX = "LPA:"


def luhn_check_digit(digits: str) -> str:
    """Return the Luhn check digit to append to `digits`."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError("Luhn input must be a non-empty string of decimal digits")
    total = 0
    # The rightmost payload digit sits next to the check digit, so it is the one doubled.
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_valid_iccid(value: str) -> bool:
    """Tell whether `value` is an ICCID: 89..., 19 or 20 digits (or 19 + `F`), Luhn-valid."""
    if not isinstance(value, str) or not _ICCID.fullmatch(value) or not value.startswith("89"):
        return False
    digits = value.removesuffix("F")
    return luhn_check_digit(digits[:-1]) == digits[-1]


def normalize_iccid(value: str) -> str:
    """Return the canonical ICCID (no `F` padding); ValueError if `value` is not a valid ICCID."""
    if not is_valid_iccid(value):
        raise ValueError(f"not a valid ICCID: {value!r}")
    return value.removesuffix("F")


def make_iccid(prefix: str, serial: int, length: int = 19) -> str:
    """Build an ICCID from an issuer prefix and a serial number, with its Luhn digit."""
    if length not in (19, 20):
        raise ValueError("ICCID length must be 19 or 20")
    if not _DIGITS.fullmatch(prefix) or not prefix.startswith("89"):
        raise ValueError("ICCID prefix must be digits starting with 89")
    if serial < 0:
        raise ValueError("ICCID serial must not be negative")
    serial_width = length - 1 - len(prefix)
    serial_text = str(serial)
    if serial_width < 1 or len(serial_text) > serial_width:
        raise ValueError(
            f"serial {serial} does not fit after prefix {prefix} in a {length}-digit ICCID"
            f" ({max(serial_width, 0)} digits left)"
        )
    payload = prefix + serial_text.zfill(serial_width)
    return payload + luhn_check_digit(payload)


def is_valid_eid(value: str) -> bool:
    """Tell whether `value` is an EID: 32 digits, starting 89, ISO 7064 MOD 97-10 check."""
    return (
        isinstance(value, str) and _EID.fullmatch(value) is not None and value.startswith("89") and int(value) % 97 == 1
    )


def make_eid(body: str) -> str:
    """Append the two MOD 97-10 check digits to a 30-digit EID body starting with 89."""
    if len(body) != 30 or not _DIGITS.fullmatch(body) or not body.startswith("89"):
        raise ValueError("EID body must be 30 digits starting with 89")
    return f"{body}{98 - int(body + '00') % 97:02d}"


# Test devices of the sandbox (docs/sandbox.md): a profile ordered for the first installs when the device
# downloads it; one ordered for the second fails to install, and the SM-DP+ simulator reports the failure.
TEST_DEVICE_EID_INSTALLS = make_eid("89" + "0" * 22 + "999001")
TEST_DEVICE_EID_INSTALL_FAILS = make_eid("89" + "0" * 22 + "999002")


def make_imsi(mcc: str, mnc: str, msin: int) -> str:
    """Build a 15-digit IMSI: MCC (3 digits) + MNC (2 or 3) + MSIN zero-padded to fill."""
    if len(mcc) != 3 or not _DIGITS.fullmatch(mcc):
        raise ValueError("MCC must be 3 digits")
    if len(mnc) not in (2, 3) or not _DIGITS.fullmatch(mnc):
        raise ValueError("MNC must be 2 or 3 digits")
    if msin < 0:
        raise ValueError("MSIN must not be negative")
    width = 15 - len(mcc) - len(mnc)
    msin_text = str(msin)
    if len(msin_text) > width:
        raise ValueError(f"MSIN {msin} does not fit in {width} digits")
    return mcc + mnc + msin_text.zfill(width)


def is_valid_matching_id(value: str) -> bool:
    """Tell whether `value` is a matchingId: only `[0-9A-Z-]`, possibly empty."""
    return isinstance(value, str) and _MATCHING_ID.fullmatch(value) is not None


def new_matching_id() -> str:
    """Return a fresh random matchingId such as `4K7QZ-0B2XM-ANR8D-W5T1C` (~103 bits)."""
    groups = ("".join(secrets.choice(_MATCHING_ID_ALPHABET) for _ in range(5)) for _ in range(4))
    return "-".join(groups)


def is_valid_fqdn(value: str) -> bool:
    """Tell whether `value` is a host name usable as an SM-DP+ or SM-DS address."""
    return isinstance(value, str) and _FQDN.fullmatch(value) is not None


@dataclass(frozen=True)
class ActivationCode:
    """An SGP.22 section 4.1 activation code (the text behind the eSIM QR code)."""

    smdp_address: str
    matching_id: str
    smdp_oid: str | None = None
    confirmation_code_required: bool = False

    def __post_init__(self) -> None:
        if not is_valid_fqdn(self.smdp_address):
            raise ValueError(f"SM-DP+ address is not a valid FQDN: {self.smdp_address!r}")
        if not is_valid_matching_id(self.matching_id):
            raise ValueError(f"matching id may only hold 0-9, A-Z and '-': {self.matching_id!r}")
        if self.smdp_oid is not None and not _OID.fullmatch(self.smdp_oid):
            raise ValueError(f"SM-DP+ OID must be a dotted decimal OID: {self.smdp_oid!r}")
        length = len(self.build())
        if length > ACTIVATION_CODE_MAX_LENGTH:
            raise ValueError(f"activation code is {length} characters, the maximum is {ACTIVATION_CODE_MAX_LENGTH}")

    def build(self, *, lpa_prefix: bool = True) -> str:
        """Return `LPA:1$<address>$<matching id>[$<oid>[$1]]` (without `LPA:` if asked)."""
        text = f"1${self.smdp_address}${self.matching_id}"
        if self.smdp_oid is not None or self.confirmation_code_required:
            text += f"${self.smdp_oid or ''}"
        if self.confirmation_code_required:
            # The 5th field is a flag, never the confirmation code itself (SGP.22 4.1).
            text += "$1"
        return LPA_PREFIX + text if lpa_prefix else text

    def __str__(self) -> str:
        return self.build()

    @classmethod
    def parse(cls, text: str) -> ActivationCode:
        """Parse an activation code, with or without the `LPA:` prefix; ValueError says what is wrong."""
        if not isinstance(text, str):
            raise ValueError("activation code must be a string")
        body = text.removeprefix(LPA_PREFIX)
        if len(LPA_PREFIX + body) > ACTIVATION_CODE_MAX_LENGTH:
            raise ValueError(f"activation code is longer than {ACTIVATION_CODE_MAX_LENGTH} characters")
        fields = body.split("$")
        if len(fields) < 3:
            raise ValueError("activation code needs AC_Format, SM-DP+ address and matching id fields")
        if fields[0] != "1":
            raise ValueError(f"AC_Format must be 1, got {fields[0]!r}")
        if len(fields) > 5:
            raise ValueError("activation code has more than 5 '$'-separated fields")
        address, matching_id = fields[1], fields[2]
        if not address:
            raise ValueError("SM-DP+ address is empty")
        oid = fields[3] if len(fields) > 3 and fields[3] else None
        cc_required = False
        if len(fields) == 5:
            if fields[4] != "1":
                raise ValueError(f"confirmation code required flag must be '1' when present, got {fields[4]!r}")
            cc_required = True
        return cls(address, matching_id, oid, cc_required)
