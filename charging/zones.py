"""Where a usage record happened: home, eu or world, from the visited network's MCC-MNC.

No visited network, or one with the MCC of the tenant's host network, is home; an MCC of the EU or
the EEA (the 27 member states with Iceland, Liechtenstein and Norway) is eu; anything else is world.
"""

from __future__ import annotations

import re

HOME = "home"
EU = "eu"
WORLD = "world"
ZONES = (HOME, EU, WORLD)

# The mobile country codes (ITU-T E.212) of the EU27 and of Iceland, Liechtenstein and Norway.
EU_EEA_MCCS = frozenset(
    {
        "232",  # Austria
        "206",  # Belgium
        "284",  # Bulgaria
        "219",  # Croatia
        "280",  # Cyprus
        "230",  # Czechia
        "238",  # Denmark
        "248",  # Estonia
        "244",  # Finland
        "208",  # France
        "262",  # Germany
        "202",  # Greece
        "216",  # Hungary
        "272",  # Ireland
        "222",  # Italy
        "247",  # Latvia
        "246",  # Lithuania
        "270",  # Luxembourg
        "278",  # Malta
        "204",  # Netherlands
        "260",  # Poland
        "268",  # Portugal
        "226",  # Romania
        "231",  # Slovakia
        "293",  # Slovenia
        "214",  # Spain
        "240",  # Sweden
        "274",  # Iceland
        "295",  # Liechtenstein
        "242",  # Norway
    }
)
# MCC then MNC (2 or 3 digits), with or without a dash between them.
PLMN = re.compile(r"([0-9]{3})-?([0-9]{2,3})", re.ASCII)


def valid_plmn(visited_plmn: str) -> bool:
    """Whether a visited network reads as MCC-MNC (20801, 208-01, 310-410)."""
    return PLMN.fullmatch(visited_plmn) is not None


def zone_of(visited_plmn: str | None, home_mcc: str | None) -> str:
    """The zone of a record: home without a visited network or on the host network's country, else eu or world."""
    if not visited_plmn:
        return HOME
    match = PLMN.fullmatch(visited_plmn)
    if match is None:
        raise ValueError(f"{visited_plmn!r} is not an MCC-MNC such as 20801")
    mcc = match[1]
    if mcc == home_mcc:
        return HOME
    return EU if mcc in EU_EEA_MCCS else WORLD
