"""The demo sink: a DEMO STAND-IN for the systems hub delivers to, for trying hub on one machine.

One process, two loopback servers:
- HTTP (Starlette under uvicorn) answering any path as the CRM, finance, operations, marketing
  and Z-API would. The first path segment names the target system (`/crm/leads` → crm); Z-API's
  send-text shape (`…/instances/{instance}/token/{token}/send-text`) is answered like Z-API, with
  its `Client-Token` checked. Every other request's Standard Webhooks signature is verified
  (`webhook-id`, `webhook-timestamp`, `webhook-signature`; 5 minutes tolerance): a bad one gets
  401, as a careful receiver would answer; an unsigned one is accepted and marked `unsigned`.
- SMTP (aiosmtpd) accepting every e-mail; STARTTLS (`--smtp-starttls`) with a certificate from a
  demo CA of its own (`<data_dir>/sink-tls/`), and any AUTH login accepted: loopback only.

Everything received is recorded in a small SQLite file (`<data_dir>/sink.db`): time, target
system, method and path, webhook-id, signature verdict, body. `GET /` shows it as a page,
`hub sink --tail` in a terminal. Nothing here is used outside demo mode.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hmac
import html
import logging
import re
import secrets
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hub.core.errors import ConfigError
from hub.core.signing import WHSEC_PREFIX, sign_standard_webhooks, signing_key

log = logging.getLogger("hub.local.sink")

LABEL = "DEMO STAND-IN"
TOLERANCE_SECONDS = 300
MAX_BODY = 1024 * 1024
STORE_FILE = "sink.db"
SECRET_FILE = "sink.secret"
TLS_DIR = "sink-tls"
SYSTEM_EMAIL = "email"
ZAPI_PATH = re.compile(r"^(?:/(?P<prefix>[^/]+))?.*?/instances/[^/]+/token/[^/]+/send-text$")


class Verdict(enum.StrEnum):
    """What the sink concluded about a request's authenticity."""

    VALID = "valid"  # Standard Webhooks signature verified
    INVALID = "invalid"  # signed, but no secret matches (or stale timestamp): answered 401
    UNSIGNED = "unsigned"  # no webhook-signature header
    TOKEN_OK = "token ok"  # Z-API: Client-Token as expected
    TOKEN_BAD = "token bad"  # Z-API: Client-Token missing or wrong: answered 401
    NOT_SIGNED = "n/a"  # e-mail: nothing to verify


# -- signing secrets and verification ------------------------------------------------------------


def new_secret() -> str:
    """A fresh Standard Webhooks secret, `whsec_<base64 of 24 random bytes>`."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def load_or_create_secret(data_dir: Path) -> str:
    """The sink's signing secret, kept in `<data_dir>/sink.secret` (created on first use)."""
    path = data_dir / SECRET_FILE
    if path.is_file():
        saved = path.read_text().strip()
        if saved:
            return saved
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def verify_signature(
    secrets_: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> tuple[Verdict, str]:
    """(verdict, reason) for a Standard Webhooks request; header names are matched lower-case."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("webhook-signature")
    if not signature:
        return Verdict.UNSIGNED, "no webhook-signature header"
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    if not msg_id or not stamp:
        return Verdict.INVALID, "webhook-id or webhook-timestamp missing"
    try:
        timestamp = int(stamp)
    except ValueError:
        return Verdict.INVALID, "webhook-timestamp is not a number"
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        return Verdict.INVALID, "timestamp too old"
    if timestamp > current + tolerance:
        return Verdict.INVALID, "timestamp too new"
    given = [part.encode() for part in signature.split() if part.startswith("v1,")]
    for secret in secrets_:
        try:
            key = signing_key(secret)
        except ConfigError:
            continue
        expected = sign_standard_webhooks(key, msg_id, timestamp, body).encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            return Verdict.VALID, "signature verified"
    return Verdict.INVALID, "no secret matches the signature"


# -- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request (or e-mail) as a target system received it."""

    system: str
    channel: str  # webhook | zapi | smtp
    method: str
    path: str
    verdict: Verdict
    detail: str
    body: str
    webhook_id: str | None = None
    at: float = field(default_factory=time.time)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": datetime.fromtimestamp(self.at).isoformat(timespec="milliseconds"),
            "system": self.system,
            "channel": self.channel,
            "method": self.method,
            "path": self.path,
            "webhook_id": self.webhook_id,
            "verdict": self.verdict.value,
            "detail": self.detail,
            "body": self.body,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    system TEXT NOT NULL,
    channel TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    webhook_id TEXT,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL,
    body TEXT NOT NULL
)
"""
_COLUMNS = "id, at, system, channel, method, path, webhook_id, verdict, detail, body"


class SinkStore:
    """What the sink received, in a SQLite file that the page and `hub sink --tail` read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SinkStore:
        return cls(data_dir / STORE_FILE)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, item: Received) -> int:
        with self._lock, self._connect() as conn:
            cursor = conn.execute(
                f"INSERT INTO received ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item.at,
                    item.system,
                    item.channel,
                    item.method,
                    item.path,
                    item.webhook_id,
                    item.verdict.value,
                    item.detail,
                    item.body,
                ),
            )
            return int(cursor.lastrowid or 0)

    def list(
        self, after: int = 0, system: str | None = None, last: int | None = None
    ) -> list[Received]:
        """Rows with id > `after` (oldest first); `last` keeps only the newest N of them."""
        query = f"SELECT {_COLUMNS} FROM received WHERE id > ?"
        params: list[Any] = [after]
        if system is not None:
            query += " AND system = ?"
            params.append(system)
        query += " ORDER BY id DESC"
        if last is not None:
            query += " LIMIT ?"
            params.append(last)
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_row(r) for r in reversed(rows)]

    def clear(self) -> int:
        with self._lock, self._connect() as conn:
            return conn.execute("DELETE FROM received").rowcount


def _row(row: tuple[Any, ...]) -> Received:
    id_, at, system, channel, method, path, webhook_id, verdict, detail, body = row
    return Received(
        system=system,
        channel=channel,
        method=method,
        path=path,
        verdict=Verdict(verdict),
        detail=detail,
        body=body,
        webhook_id=webhook_id,
        at=at,
        id=id_,
    )


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkConfig:
    """What the sink checks: the signing secrets it accepts, the Z-API client token it expects."""

    secrets: tuple[str, ...]
    zapi_client_token: str | None = None


def system_of(path: str) -> tuple[str, str]:
    """(target system, channel) from a request path: `/crm/leads` → (crm, webhook)."""
    match = ZAPI_PATH.match(path)
    if match is not None:
        prefix = match.group("prefix")
        return (prefix if prefix and prefix != "instances" else "zapi"), "zapi"
    first = path.strip("/").split("/", 1)[0]
    return (first or "root"), "webhook"


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": f"{LABEL}: {message}"}}, status)


def create_sink_app(store: SinkStore, config: SinkConfig) -> Starlette:
    """The HTTP half of the sink."""

    async def receive(request: Request) -> Response:
        path = request.url.path
        body = await _read_body(request)
        text = body.decode("utf-8", "replace")
        system, channel = system_of(path)
        if channel == "zapi":
            token = request.headers.get("client-token")
            ok = config.zapi_client_token is None or (
                token is not None and hmac.compare_digest(token, config.zapi_client_token)
            )
            verdict = Verdict.TOKEN_OK if ok else Verdict.TOKEN_BAD
            detail = "Client-Token as expected" if ok else "Client-Token missing or wrong"
            store.add(Received(system, channel, request.method, path, verdict, detail, text))
            log.info("sink.received", extra={"endpoint": system, "outcome": verdict.value})
            if not ok:
                return JSONResponse({"error": "Client-Token invalid (" + LABEL + ")"}, 401)
            message_id = secrets.token_hex(10).upper()
            return JSONResponse({"zaapId": message_id, "messageId": message_id, "id": message_id})
        verdict, detail = verify_signature(config.secrets, request.headers, body)
        webhook_id = request.headers.get("webhook-id")
        item = Received(system, channel, request.method, path, verdict, detail, text, webhook_id)
        store.add(item)
        log.info("sink.received", extra={"endpoint": system, "outcome": verdict.value})
        if verdict == Verdict.INVALID:
            return _error(401, "invalid_signature", detail)
        return JSONResponse({"received": True, "system": system, "stand_in": LABEL})

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(store.list(last=200)))

    async def received(request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return _error(400, "bad_request", "after is a number")
        items = store.list(after=after, system=request.query_params.get("system"))
        return JSONResponse({"stand_in": LABEL, "received": [i.to_json() for i in items]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "stand_in": LABEL})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/_sink/health", health, methods=["GET"]),
            Route("/_sink/received", received, methods=["GET"]),
            Route("/{path:path}", receive, methods=methods),
        ]
    )


def render_page(items: Iterable[Received]) -> str:
    """The sink's page: what each target system received, newest first, refreshed every 2 s."""
    rows = []
    for item in sorted(items, key=lambda i: i.id or 0, reverse=True):
        css = "ok" if item.verdict in (Verdict.VALID, Verdict.TOKEN_OK) else "bad"
        if item.verdict in (Verdict.UNSIGNED, Verdict.NOT_SIGNED):
            css = "none"
        rows.append(
            "<tr>"
            f"<td>{html.escape(datetime.fromtimestamp(item.at).strftime('%H:%M:%S'))}</td>"
            f"<td><b>{html.escape(item.system)}</b></td>"
            f"<td>{html.escape(item.method)} {html.escape(item.path)}</td>"
            f"<td><code>{html.escape(item.webhook_id or '')}</code></td>"
            f"<td class={css} title='{html.escape(item.detail)}'>"
            f"{html.escape(item.verdict.value)}</td>"
            f"<td><pre>{html.escape(pretty_body(item.body))}</pre></td>"
            "</tr>"
        )
    table = "\n".join(rows) or "<tr><td colspan=6>nothing received yet</td></tr>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>hub sink: {LABEL}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
.banner {{ background: #fff3cd; border: 1px solid #e0c060; padding: .6em 1em; }}
table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3em .6em; vertical-align: top;
          text-align: left; }}
pre {{ margin: 0; white-space: pre-wrap; font-size: .85em; }}
.ok {{ color: #176317; font-weight: bold; }} .bad {{ color: #b00020; font-weight: bold; }}
.none {{ color: #666; }}
</style></head><body>
<h1>hub sink <small>({LABEL})</small></h1>
<p class="banner">{LABEL}: this page stands in for the CRM, finance, operations, marketing,
Z-API (WhatsApp) and e-mail systems, so that <code>hub up</code> shows deliveries end to end on one
machine. Each webhook's Standard Webhooks signature is verified; nothing here is a real system.</p>
<table><tr><th>time</th><th>system</th><th>request</th><th>webhook-id</th><th>signature</th>
<th>body</th></tr>
{table}
</table></body></html>
"""


def pretty_body(body: str) -> str:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body


def describe(item: Received, width: int = 160) -> str:
    """One terminal line for `hub sink --tail`."""
    when = datetime.fromtimestamp(item.at).strftime("%H:%M:%S")
    ident = f" {item.webhook_id}" if item.webhook_id else ""
    body = " ".join(item.body.split())
    line = f"{when}  {item.system:<11} {item.method} {item.path}{ident}  [{item.verdict}]  {body}"
    return line if len(line) <= width else line[: width - 1] + "…"


# -- SMTP -----------------------------------------------------------------------------------------


class SmtpRecorder:
    """aiosmtpd handler: records every message as the `email` system received it."""

    def __init__(self, store: SinkStore) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        message = message_from_bytes(data, policy=policy.default)
        text = ""
        if isinstance(message, EmailMessage):
            part = message.get_body(preferencelist=("plain", "html"))
            text = part.get_content() if part is not None else ""
        body = orjson.dumps(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "subject": str(message.get("Subject", "")),
                "text": text,
            }
        ).decode()
        message_id = str(message.get("Message-ID", "")).strip("<>") or None
        delivery_id = message_id.split("@", 1)[0] if message_id else None
        self.store.add(
            Received(
                SYSTEM_EMAIL,
                "smtp",
                "MAIL",
                "smtp",
                Verdict.NOT_SIGNED,
                "e-mail: nothing to verify",
                body,
                delivery_id,
            )
        )
        log.info("sink.received", extra={"endpoint": SYSTEM_EMAIL, "outcome": "received"})
        return "250 Message accepted for delivery (" + LABEL + ")"


def _accept_any_login(*_args: Any, **_kwargs: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


def start_smtp(store: SinkStore, host: str, port: int, tls: TlsFiles | None = None) -> Any:
    """Start the SMTP half in a thread of its own; returns the aiosmtpd Controller (`.stop()`)."""
    from aiosmtpd.controller import Controller

    # aiosmtpd 1.4 logs a deprecation of its own Session.login_data on every successful AUTH
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
    controller = Controller(
        SmtpRecorder(store),
        hostname=host,
        port=port,
        auth_require_tls=False,
        authenticator=_accept_any_login,
        tls_context=context,
        ready_timeout=10,
    )
    controller.start()
    return controller


def run_sink(
    store: SinkStore,
    config: SinkConfig,
    host: str,
    port: int,
    smtp_port: int | None,
    tls: TlsFiles | None = None,
) -> None:
    """Serve HTTP (and SMTP when `smtp_port` is given) until SIGINT or SIGTERM."""
    import uvicorn

    controller = start_smtp(store, host, smtp_port, tls) if smtp_port is not None else None
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                create_sink_app(store, config),
                host=host,
                port=port,
                access_log=False,
                log_level="warning",
                lifespan="off",
            )
        )
        asyncio.run(server.serve())
    finally:
        if controller is not None:
            controller.stop()


# -- TLS for STARTTLS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A demo CA, the sink's certificate for 127.0.0.1/localhost, and a CA bundle that trusts it."""

    ca: Path
    cert: Path
    key: Path
    bundle: Path


def ensure_tls(data_dir: Path) -> TlsFiles:
    """The sink's TLS files in `<data_dir>/sink-tls/`, created once (valid for a year)."""
    folder = data_dir / TLS_DIR
    files = TlsFiles(
        folder / "ca.pem", folder / "cert.pem", folder / "key.pem", folder / "bundle.pem"
    )
    if not (files.ca.is_file() and files.cert.is_file() and files.key.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        ca_pem, cert_pem, key_pem = _issue_certificates()
        _write_atomically(files.key, key_pem, 0o600)
        _write_atomically(files.cert, cert_pem)
        _write_atomically(files.ca, ca_pem)
    return files


def write_trust_bundle(files: TlsFiles, extra_cafiles: Sequence[str] = ()) -> Path:
    """`files.bundle`: certifi's and the system's CAs, any `extra_cafiles`, and the demo CA.

    What `SSL_CERT_FILE` points at for the processes that must trust the sink (demo mode only).
    """
    parts: list[bytes] = []
    for cafile in [_certifi_where(), ssl.get_default_verify_paths().cafile, *extra_cafiles]:
        if cafile and Path(cafile).is_file() and Path(cafile) != files.bundle:
            parts.append(Path(cafile).read_bytes().rstrip() + b"\n")
    parts.append(files.ca.read_bytes())
    _write_atomically(files.bundle, b"".join(parts))
    return files.bundle


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Readers see the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    temporary.replace(path)


def _certifi_where() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _issue_certificates() -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key) in PEM: a throwaway CA for the demo sink only."""
    import ipaddress
    from datetime import UTC, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hub demo sink CA ({LABEL})")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem
