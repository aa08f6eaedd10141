"""Sizes and counts as people read them, one definition for the CLI and the web catalog (they had drifted)."""

from __future__ import annotations


def human_bytes(n: int | float | None, missing: str = "-") -> str:
    """Decimal units, as `ls` and the web pages print them: ``human_bytes(91_600_000) == "91.6 MB"``."""
    if n is None:
        return missing
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_count(n: int | None, missing: str = "-") -> str:
    """Parameter counts: ``human_count(22_700_000) == "22.7M"``; T for trillions."""
    if n is None:
        return missing
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
