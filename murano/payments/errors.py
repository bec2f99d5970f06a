"""Errors of the payments layer.

    MuranoError
    └── PaymentServiceUnavailable   the facilitator cannot be reached (503); nothing was
                                    charged, the same payment may be sent again later
    Exception
    └── PaymentRejected             a payment that will not be accepted, with an x402-style
                                    `code`; the gate turns it into a 402 challenge, the
                                    top-up route into Venice's `{error: CODE, message}`

`PaymentServiceUnavailable` is a domain error (`murano.errors`, mapped to 503 by
`murano.api.errors`), re-exported here.
"""

from __future__ import annotations

from murano.errors import PaymentServiceUnavailable

__all__ = ["PaymentRejected", "PaymentServiceUnavailable"]


class PaymentRejected(Exception):
    """A payment that was checked and refused. `code` is machine-readable (the
    facilitator's invalid reason where it gave one), `message` says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
