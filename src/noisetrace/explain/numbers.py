"""Numbers for people and for JSON: IG values span many decades (1e-5 ... 1e2), and a raw
``repr`` (``1.3255391630545724e-05``) hides the two digits that matter."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fmt_num(x: float | None, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, fixed-point where that reads naturally.

    0.0108 -> "0.0108", 187.6 -> "188", 12345.6 -> "12346", 1.3255e-05 -> "1.33e-05";
    None -> "n/a".
    """
    if x is None:
        return "n/a"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 10**digits:  # whole numbers: every digit is known, no exponent needed
        return f"{x:.0f}"
    if a >= 1e-3:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def round_floats(obj: Any, digits: int = 6) -> Any:
    """``obj`` (JSON-like: dicts, lists, tuples, scalars) with every float rounded to
    ``digits`` significant digits; ints, bools and strings are left as they are."""
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if not math.isfinite(v) or v == 0 else float(f"{v:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_floats(v, digits) for v in obj]
    return obj
