"""Company and bank identifiers checked with python-stdnum: VAT ids, SIREN/SIRET, IBAN, BIC; invoice locales.

Each check returns the identifier in its compact form, or raises `IdentifierError` whose message names
the identifier and says how to fix it; callers attach it to the field it came from.
"""

from __future__ import annotations

import re

import phonenumbers
from babel import Locale, UnknownLocaleError
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.fr import siren, siret

# Countries whose VAT ids are checked by stdnum.eu.vat; Greece writes its prefix EL, Northern Ireland XI.
EU_VAT_COUNTRIES = frozenset(code.upper() for code in eu_vat.MEMBER_STATES) - {"XI"}
_VAT_PREFIX = {"GR": "EL"}
_FREE_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ./-]{0,48}", re.ASCII)
_FREE_VAT_ID = re.compile(r"[A-Z0-9]{2,20}", re.ASCII)


class IdentifierError(ValueError):
    """An identifier that cannot be accepted; the message names it and the fix."""


def vat_prefix(country: str) -> str:
    """The two letters an EU VAT id of `country` starts with (EL for Greece)."""
    return _VAT_PREFIX.get(country, country)


def _reason(noun: str, value: str, error: ValidationError, expected: str) -> str:
    if isinstance(error, InvalidChecksum):
        return f"The {noun} {value} has a wrong check digit."
    if isinstance(error, InvalidLength):
        return f"The {noun} {value} has the wrong number of characters: {expected}."
    if isinstance(error, InvalidComponent):
        return f"The {noun} {value} has a part that does not exist: {expected}."
    if isinstance(error, InvalidFormat):
        return f"The {noun} {value} is not well formed: {expected}."
    return f"The {noun} {value} is not valid: {expected}."


def check_vat_id(value: str, country: str) -> str:
    """A VAT id of a company of `country`: EU ids checked (prefix and check digits), others kept as given."""
    compact = re.sub(r"[\s.-]", "", value).upper()
    if country in EU_VAT_COUNTRIES:
        prefix = vat_prefix(country)
        if not compact.startswith(prefix):
            raise IdentifierError(
                f"The VAT id {value} does not start with {prefix}: a VAT id of a company in {country} does."
            )
        try:
            return str(eu_vat.validate(compact))
        except ValidationError as error:
            raise IdentifierError(
                _reason("VAT id", value, error, f"write it as {prefix} followed by the national number")
            ) from None
    if not _FREE_VAT_ID.fullmatch(compact):
        raise IdentifierError(
            f"The VAT id {value!r} is not a tax number: use 2 to 20 letters and digits, as the tax office wrote it."
        )
    return compact


def check_registration_number(value: str, country: str) -> tuple[str, str | None]:
    """The company registration number and its kind: SIREN (9 digits) or SIRET (14) in France; free elsewhere."""
    if country == "FR":
        compact = re.sub(r"[\s.-]", "", value)
        module, kind = (siret, "SIRET") if len(compact) == 14 else (siren, "SIREN")
        try:
            return str(module.validate(compact)), kind
        except ValidationError as error:
            raise IdentifierError(
                _reason("registration number", value, error, "in France, a SIREN of 9 digits or a SIRET of 14 digits")
            ) from None
    if not _FREE_IDENTIFIER.fullmatch(value):
        raise IdentifierError(
            f"The registration number {value!r} holds characters a registration number does not: "
            "use letters, digits, spaces, dots, slashes and dashes."
        )
    return value.strip(), None


def check_iban(value: str) -> str:
    try:
        return str(stdnum_iban.validate(value))
    except ValidationError as error:
        raise IdentifierError(
            _reason("IBAN", value, error, "two letters of the country, two check digits, then the account")
        ) from None


def format_iban(value: str) -> str:
    """An IBAN in groups of four, as printed: FR76 3000 6000 0112 3456 7890 189."""
    return str(stdnum_iban.format(value))


def check_bic(value: str) -> str:
    try:
        return str(stdnum_bic.validate(value))
    except ValidationError as error:
        raise IdentifierError(
            _reason("BIC", value, error, "8 or 11 characters: bank, country, location and optional branch codes")
        ) from None


def check_locale(value: str) -> str:
    """A locale Babel knows, in Babel's form (fr_FR)."""
    try:
        locale = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise IdentifierError(f"The locale {value!r} is unknown: use a language and territory such as fr_FR.") from None
    return str(locale)


def default_locale(country: str) -> str:
    """The invoice locale of a country until the tenant chooses another: French in France, British English elsewhere."""
    return "fr_FR" if country == "FR" else "en_GB"


def check_phone(value: str, country: str) -> str:
    """A phone number in E.164 form; a national number is read as one of `country`."""
    try:
        number = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise IdentifierError(f"The phone number {value} is not valid: write it as +33 1 23 45 67 89.")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
