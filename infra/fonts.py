"""The one CJK font of the project (PDF letters and report charts), shipped by a PyPI package."""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path

# WenQuanYi Micro Hei: TrueType (glyf) outlines, which reportlab can embed (the
# OpenType/CFF Noto CJK fonts on PyPI it cannot) and matplotlib can draw.
FONT_PACKAGE, FONT_FILE = "paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc"


@cache
def cjk_font_path() -> Path:
    resource = importlib.resources.files(FONT_PACKAGE) / FONT_FILE
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"the CJK font {FONT_FILE} of {FONT_PACKAGE} is missing: "
                                "reinstall the project (./run)")
    return path
