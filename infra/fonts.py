"""The project's CJK fonts, shipped by PyPI packages: the sans (report charts, letter
headings) and the serif of letter bodies, converted once for reportlab."""

from __future__ import annotations

import importlib.resources
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

# WenQuanYi Micro Hei: TrueType (glyf) outlines, which reportlab can embed (the
# OpenType/CFF Noto CJK fonts on PyPI it cannot) and matplotlib can draw.
FONT_PACKAGE, FONT_FILE = "paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc"
# Noto Serif SC (SIL OFL 1.1): the body of formal letters, as a Chinese notice is set in a
# Song/Ming serif. It ships with CFF outlines, which reportlab cannot embed, so it is
# converted to TrueType outlines once (about half a minute) and kept beside the venv.
SERIF_PACKAGE, SERIF_FILE = "pylopdf_fonts_zh_cn", "NotoSerifSC-Regular.otf"
SERIF_CACHE = Path(sys.prefix) / "share" / "lapse-notifier" / "NotoSerifSC-Regular.ttf"


def _resource(package: str, name: str) -> Path:
    path = Path(str(importlib.resources.files(package) / name))
    if not path.is_file():
        raise FileNotFoundError(f"the CJK font {name} of {package} is missing: "
                                "reinstall the project (./run)")
    return path


@cache
def cjk_font_path() -> Path:
    return _resource(FONT_PACKAGE, FONT_FILE)


@cache
def serif_font_path() -> Path:
    """The serif as TrueType, converted on first use; concurrent first uses each convert
    and the last rename wins, so a reader never sees half a file."""
    if not SERIF_CACHE.is_file():
        SERIF_CACHE.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=SERIF_CACHE.parent, suffix=".tmp",
                                         delete=False) as tmp:
            _to_truetype(_resource(SERIF_PACKAGE, SERIF_FILE), Path(tmp.name))
        os.replace(tmp.name, SERIF_CACHE)
    return SERIF_CACHE


def _to_truetype(source: Path, target: Path) -> None:
    """CFF outlines to quadratic TrueType ones (fontTools' otf2ttf recipe)."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import TTFont, newTable

    font = TTFont(str(source))
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"], font["loca"] = glyf, newTable("loca")
    for table in ("CFF ", "VORG"):
        if table in font:
            del font[table]
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs",
                  "maxInstructionDefs", "maxStackElements", "maxSizeOfInstructions",
                  "maxComponentElements"):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names: smaller, and none are needed
    font.sfntVersion = "\x00\x01\x00\x00"
    font.save(str(target))
