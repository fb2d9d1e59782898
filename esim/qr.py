"""QR codes for eSIM activation codes, as SVG and PNG."""

from __future__ import annotations

import io

import segno

# ISO/IEC 18004 asks for a 4-module quiet zone; scanners reading a screen fail without it.
QUIET_ZONE_MODULES = 4
# 8 px per module keeps a typical activation code (version 4-6) around 330-400 px: sharp on any
# screen and large enough for a phone camera held at arm's length.
PNG_SCALE = 8
SVG_SCALE = 8
ERROR_CORRECTION = "m"


def _make(code: str) -> segno.QRCode:
    if not isinstance(code, str) or not code:
        raise ValueError("activation code for the QR code must be a non-empty string")
    # boost_error off: the level stays M as agreed, so the symbol size is predictable.
    return segno.make_qr(code, error=ERROR_CORRECTION, boost_error=False)


def activation_qr_svg(code: str) -> bytes:
    """Render `code` (e.g. `LPA:1$...`) as an SVG QR code (error correction M, quiet zone)."""
    out = io.BytesIO()
    _make(code).save(out, kind="svg", scale=SVG_SCALE, border=QUIET_ZONE_MODULES, xmldecl=True)
    return out.getvalue()


def activation_qr_png(code: str) -> bytes:
    """Render `code` (e.g. `LPA:1$...`) as a PNG QR code (error correction M, quiet zone)."""
    out = io.BytesIO()
    _make(code).save(out, kind="png", scale=PNG_SCALE, border=QUIET_ZONE_MODULES)
    return out.getvalue()
