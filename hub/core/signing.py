"""Standard Webhooks signatures, made once here for everything that signs or checks them.

Outgoing deliveries and alerts sign with these; the incoming `standard-webhooks` scheme
(`hub.ingress.signatures`), the demo sender and the demo sink check with them. Secrets are
`whsec_<base64>` (decoded) or any other text (its UTF-8 bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from hub.core.errors import ConfigError

WHSEC_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """An outgoing signing secret as bytes: `whsec_<base64>` decoded, anything else as text."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("signing secret: whsec_ value is not valid base64") from exc
    return secret.encode()


def sign_standard_webhooks(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: `v1,<base64 HMAC-SHA256>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
