"""Money as integer micro-dollars.

Balances are stored and compared as whole micro-USD (1e-6 USD) so that the conditional
`UPDATE ... WHERE balance - reserved >= amount` is exact integer arithmetic on every
backend: SQLite has no decimal type (NUMERIC columns there hold floats, where
0.1 + 0.2 != 0.3), PostgreSQL's NUMERIC would be exact but integers are exact on both.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = ["MICROS_PER_USD", "format_usd", "from_micros", "parse_usd", "to_micros"]

MICROS_PER_USD = 1_000_000


def to_micros(usd: Decimal, *, round_up: bool = False) -> int:
    """`usd` in micro-dollars. Finer amounts are an error unless `round_up` (used for
    charges, so that a sub-micro price is never undercharged)."""
    scaled = usd * MICROS_PER_USD
    whole = scaled.to_integral_value(rounding=ROUND_CEILING)
    if whole != scaled and not round_up:
        raise ValueError(f"{usd} USD is finer than the smallest unit, 0.000001 USD")
    return int(whole)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def format_usd(usd: Decimal) -> str:
    """The shortest plain decimal: `10`, `9.99`, `0.000001` (never `1E+1`)."""
    text = format(usd.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def parse_usd(text: str) -> Decimal:
    """A non-negative, finite amount of USD with at most 6 decimal places."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number of USD (e.g. 5 or 2.50)") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative, finite number of USD")
    to_micros(value)
    return value
