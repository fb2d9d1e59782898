from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from PIL import Image

from mvne.esim.qr import activation_qr_png, activation_qr_svg

CODE = "LPA:1$SMDP.GSMA.COM$04386-AGYFT-A74Y8-3F815"
# This payload needs a version 3 symbol (29 modules) at level M (version 2 would do at level L),
# plus a 4-module quiet zone each side, at 8 px per module.
EXPECTED_PIXELS = (29 + 2 * 4) * 8


def test_activation_qr_svg_is_an_svg_document() -> None:
    svg = activation_qr_svg(CODE)
    assert svg.startswith(b"<?xml")
    root = ET.fromstring(svg)  # noqa: S314 - parsing our own output, not untrusted XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == str(EXPECTED_PIXELS)


def test_activation_qr_png_is_a_png_at_level_m_with_a_quiet_zone() -> None:
    png = activation_qr_png(CODE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size == (EXPECTED_PIXELS, EXPECTED_PIXELS)
    quiet = 4 * 8
    assert all(image.getpixel((x, y)) == 255 for x in range(EXPECTED_PIXELS) for y in range(quiet))
    # The top-left finder pattern starts right after the quiet zone.
    assert image.getpixel((quiet, quiet)) == 0


@pytest.mark.parametrize("render", [activation_qr_png, activation_qr_svg])
def test_an_empty_activation_code_cannot_be_rendered(render: Callable[[str], bytes]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        render("")
