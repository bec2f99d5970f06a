"""Webhooks for async jobs, as the Standard Webhooks specification has them.

    UrlPolicy (policy.py)          which URLs a job may name: `MURANO_WEBHOOK_ALLOW` host
                                   patterns; private, loopback and link-local addresses
                                   only when listed; a refused URL is InvalidRequest (400)
    sign_headers (signing.py)      webhook-id, webhook-timestamp, webhook-signature
                                   (HMAC-SHA256, `standardwebhooks`), server secret
    WebhookDispatcher (dispatch.py) persists each event as a delivery, sends it, retries
                                   with back-off for about 27 hours, resumes after a restart

Deliveries are at least once: a receiver dedupes on `webhook-id`, which stays the same
across the retries of one event.
"""

from murano.webhooks.dispatch import BACKOFF_S, WebhookDispatcher
from murano.webhooks.policy import UrlPolicy
from murano.webhooks.signing import generate_secret, load_or_create_secret, sign_headers

__all__ = [
    "BACKOFF_S",
    "UrlPolicy",
    "WebhookDispatcher",
    "generate_secret",
    "load_or_create_secret",
    "sign_headers",
]
