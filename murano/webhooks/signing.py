"""Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">` under the server's secret (`whsec_` + base64, as the
specification's libraries take it)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from pathlib import Path

from standardwebhooks import Webhook

__all__ = ["generate_secret", "load_or_create_secret", "sign_headers"]


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def load_or_create_secret(path: Path) -> str:
    """The secret kept in `path`, created (readable by its owner only) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = generate_secret()
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def sign_headers(secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body),
        "content-type": "application/json",
    }
