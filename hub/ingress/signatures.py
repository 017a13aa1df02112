"""Incoming signature schemes, each a small class with `verify(headers, raw_body, secrets, now)`.

    standard-webhooks  webhook-id / webhook-timestamp / webhook-signature: "v1,<base64> ..."
                       (svix-* header names too); secrets "whsec_<base64>"
    hmac-sha256        HMAC-SHA256 of the raw body in a configurable header, hex or base64, with an
                       optional prefix ("sha256=": GitHub X-Hub-Signature-256, Meta WhatsApp Cloud)
    stripe             Stripe-Signature: "t=<unix>,v1=<hex>[,v1=<hex>]" over "<t>.<body>"
    token              a static token header (Z-API Client-Token)
    meta               hmac-sha256 preset for Meta: X-Hub-Signature-256 "sha256=<hex>", the app
                       secret as key (WhatsApp Cloud API, Messenger, Instagram)

`secrets` holds every secret in force (several: rotation without downtime); any one matching is
enough. Signatures are computed over the raw bytes received and compared in constant time;
timestamped schemes refuse anything more than `TOLERANCE` seconds older or newer than `now`.
`headers` is any mapping looked up by lower-case name (Starlette's `Headers` is case-insensitive).

The Standard Webhooks signature itself is made in `hub.core.signing`, shared with outgoing
deliveries, alerts, the demo sender and the sink.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from hub.core.errors import ConfigError, InvalidSignature, StaleTimestamp

TOLERANCE = 300.0  # seconds either side of now
SCHEMES = ("standard-webhooks", "hmac-sha256", "stripe", "token", "meta")
META = ("x-hub-signature-256", "sha256=")

Encoding = Literal["hex", "base64"]


class SignatureScheme(Protocol):
    def verify(
        self, headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        """Return if one of `secrets` signed `raw_body`; raise InvalidSignature/StaleTimestamp."""


def _hmac(key: bytes, data: bytes) -> bytes:
    # OpenSSL's HMAC object, not the one-shot `hmac.digest`: that one releases the GIL for every
    # call, and on the web's event loop, with the group commit's threads about, each release cost
    # a wait to take it back (a call took 1.8 µs alone, 711 µs beside a thread busy in Python);
    # the object releases it only for bodies of 2 KiB and more, as hashlib does
    return hmac.new(key, data, "sha256").digest()


def _check_timestamp(raw: str | None, now: float, header: str) -> int:
    if not raw:
        raise InvalidSignature(f"missing {header} header")
    try:
        timestamp = int(raw.strip())
    except ValueError as exc:
        raise InvalidSignature(f"{header} is not a unix timestamp") from exc
    if abs(now - timestamp) > TOLERANCE:
        raise StaleTimestamp(
            f"{header} is more than {TOLERANCE / 60:.0f} minutes away from the server's clock"
        )
    return timestamp


def _any_equal(candidates: Sequence[bytes], expected: Sequence[bytes]) -> bool:
    """Constant-time comparison of every candidate against every expected value."""
    found = False
    for want in expected:
        for got in candidates:
            found |= hmac.compare_digest(got, want)
    return found


@dataclass(frozen=True)
class StandardWebhooks:
    """Standard Webhooks (and Svix): HMAC-SHA256 over "<id>.<timestamp>.<body>", base64."""

    def verify(
        self, headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        msg_id = headers.get("webhook-id") or headers.get("svix-id")
        stamp = headers.get("webhook-timestamp") or headers.get("svix-timestamp")
        signature = headers.get("webhook-signature") or headers.get("svix-signature")
        if not msg_id or not signature:
            raise InvalidSignature("missing webhook-id or webhook-signature header")
        timestamp = _check_timestamp(stamp, now, "webhook-timestamp")
        candidates = []
        for part in signature.split():
            version, _, value = part.partition(",")
            if version != "v1":
                continue
            try:
                candidates.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not candidates:
            raise InvalidSignature("webhook-signature has no v1 signature")
        signed = f"{msg_id}.{timestamp}.".encode() + raw_body
        expected = [_hmac(self.key(secret), signed) for secret in secrets]
        if not _any_equal(candidates, expected):
            raise InvalidSignature("webhook-signature does not match")

    @staticmethod
    def key(secret: str) -> bytes:
        """The HMAC key of a "whsec_<base64>" secret (the prefix is optional)."""
        encoded = secret.removeprefix("whsec_")
        try:
            return base64.b64decode(encoded + "==")
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a standard-webhooks secret must be whsec_<base64>") from exc


@dataclass(frozen=True)
class HmacSha256:
    """Generic HMAC-SHA256 of the raw body in one header (GitHub, Meta WhatsApp Cloud, ...)."""

    header: str = "x-hub-signature-256"
    encoding: Encoding = "hex"
    prefix: str = ""

    def verify(
        self, headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        value = headers.get(self.header.lower())
        if not value:
            raise InvalidSignature(f"missing {self.header} header")
        value = value.strip()
        if self.prefix:
            if not value.startswith(self.prefix):
                raise InvalidSignature(f"{self.header} must start with {self.prefix!r}")
            value = value[len(self.prefix) :]
        try:
            got = bytes.fromhex(value) if self.encoding == "hex" else base64.b64decode(value)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSignature(f"{self.header} is not {self.encoding}") from exc
        expected = [_hmac(secret.encode(), raw_body) for secret in secrets]
        if not _any_equal([got], expected):
            raise InvalidSignature(f"{self.header} does not match")


@dataclass(frozen=True)
class Stripe:
    """Stripe-Signature: "t=<unix>,v1=<hex>" over "<t>.<body>", the secret used as given."""

    header: str = "stripe-signature"

    def verify(
        self, headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        value = headers.get(self.header.lower())
        if not value:
            raise InvalidSignature(f"missing {self.header} header")
        stamp: str | None = None
        candidates = []
        for item in value.split(","):
            name, _, part = item.strip().partition("=")
            if name == "t":
                stamp = part
            elif name == "v1":
                try:
                    candidates.append(bytes.fromhex(part))
                except ValueError:
                    continue
        timestamp = _check_timestamp(stamp, now, f"{self.header} t=")
        if not candidates:
            raise InvalidSignature(f"{self.header} has no v1 signature")
        signed = f"{timestamp}.".encode() + raw_body
        expected = [_hmac(secret.encode(), signed) for secret in secrets]
        if not _any_equal(candidates, expected):
            raise InvalidSignature(f"{self.header} does not match")


@dataclass(frozen=True)
class Token:
    """A static shared token in one header (Z-API Client-Token)."""

    header: str = "client-token"

    def verify(
        self, headers: Mapping[str, str], raw_body: bytes, secrets: Sequence[str], now: float
    ) -> None:
        value = headers.get(self.header.lower())
        if not value:
            raise InvalidSignature(f"missing {self.header} header")
        expected = [secret.encode() for secret in secrets]
        if not _any_equal([value.encode()], expected):
            raise InvalidSignature(f"{self.header} does not match")


def scheme_for(
    scheme: str,
    *,
    header: str | None = None,
    encoding: Encoding | None = None,
    prefix: str | None = None,
) -> SignatureScheme:
    """The verifier for a source's `signature:` block."""
    if scheme == "standard-webhooks":
        return StandardWebhooks()
    if scheme == "hmac-sha256":
        return HmacSha256(
            header=(header or HmacSha256.header).lower(),
            encoding=encoding or "hex",
            prefix=prefix or "",
        )
    if scheme == "meta":
        return HmacSha256(header=META[0], encoding="hex", prefix=META[1])
    if scheme == "stripe":
        return Stripe(header=(header or Stripe.header).lower())
    if scheme == "token":
        return Token(header=(header or Token.header).lower())
    raise ConfigError(f"unknown signature scheme {scheme!r} (one of {', '.join(SCHEMES)})")
