"""Argument types shared by the subcommands' parsers."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

_N = TypeVar("_N", int, float)


def csv_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; an empty list is an argument error."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def checked(
    convert: Callable[[str], _N], what: str, ok: Callable[[_N], bool]
) -> Callable[[str], _N]:
    """An argparse type: ``convert`` the text, then require ``ok``; the error says what was
    expected (``checked(int, "a whole number >= 1", lambda v: v >= 1)``)."""

    def parse(text: str) -> _N:
        try:
            value: _N | None = convert(text)
        except ValueError:
            value = None
        if value is None or (isinstance(value, float) and math.isnan(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: A finite number greater than 0.
positive_float = checked(float, "a number > 0", lambda v: 0 < v < math.inf)
