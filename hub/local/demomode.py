"""Demo mode of `hub up`: on a fresh machine the example endpoints point at the demo sink.

The example mappings name their targets by `env:` references (`env:{TENANT}_CRM_URL`, …). Nobody
trying hub has a CRM, a Z-API account or an SMTP server, so for the `demo` tenant `hub up` sets
every such variable that is unset (and only those) to the DEMO STAND-IN started as a child of
the tree (`hub sink`): `DEMO_CRM_URL=http://127.0.0.1:<port>/crm`, `DEMO_CRM_SIGNING_SECRET` =
the sink's secret, `ZAPI_BASE_URL=http://127.0.0.1:<port>/whatsapp`, `SMTP_HOST`/`SMTP_PORT` =
its SMTP half, … An endpoint whose destination (url, or host for e-mail) is set is left alone.
Source signature secrets that are unset for the demo tenant get generated values, so that
`hub demo` can sign its scenarios. Generated secrets persist in `<data_dir>/demo.env`.

Nothing outside `hub up` reads this module: `hub serve`, `hub worker` and the supervisord
deployment never fall back to the sink.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from hub.core import envrefs
from hub.core.models import EndpointKind
from hub.core.settings import Settings
from hub.delivery.endpoints import EndpointConfig, read_endpoints
from hub.ingress.sources import SignatureScheme, SourceConfig, read_sources
from hub.local.processes import HUB, Child, free_port
from hub.local.sink import LABEL, ensure_tls, load_or_create_secret, new_secret, write_trust_bundle

DEMO_TENANT = "demo"
ENV_FILE = "demo.env"
SINK_HOST = "127.0.0.1"
DESTINATION = {EndpointKind.WEBHOOK: "url", EndpointKind.ZAPI: "url", EndpointKind.EMAIL: "host"}


@dataclass
class StandIn:
    """What demo mode decided: the variables it sets, and the sink child that receives."""

    http_port: int
    smtp_port: int
    env: dict[str, str] = field(default_factory=dict)  # only variables that were unset
    endpoints: list[str] = field(default_factory=list)  # names pointed at the sink
    sources: list[str] = field(default_factory=list)  # sources given generated secrets
    sink_secrets: list[str] = field(default_factory=list)
    zapi_client_token: str | None = None
    smtp_starttls: bool = False  # a stood-in e-mail endpoint wants STARTTLS
    env_file: Path | None = None

    @property
    def base(self) -> str:
        return f"http://{SINK_HOST}:{self.http_port}"

    @property
    def health_url(self) -> str:
        return self.base + "/_sink/health"

    def child(self) -> Child:
        args = [*HUB, "sink", "--host", SINK_HOST, "--port", str(self.http_port),
                "--smtp-port", str(self.smtp_port)]  # fmt: skip
        if self.smtp_starttls:
            args.append("--smtp-starttls")
        return Child("sink", args)

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The sink's environment: the tree's, plus what it verifies (never on its command line)."""
        out = dict(env)
        out["HUB_SINK_SECRETS"] = " ".join(self.sink_secrets)
        if self.zapi_client_token:
            out["HUB_SINK_ZAPI_CLIENT_TOKEN"] = self.zapi_client_token
        else:
            out.pop("HUB_SINK_ZAPI_CLIENT_TOKEN", None)
        return out

    def install(self, environ: MutableMapping[str, str]) -> dict[str, str | None]:
        """Set the variables in `environ`; returns their previous values for `restore`."""
        previous = {name: environ.get(name) for name in self.env}
        environ.update(self.env)
        return previous

    def summary(self) -> list[str]:
        lines = [
            f"{LABEL}: {', '.join(self.endpoints)} deliver to the demo sink "
            f"(not real systems) at {self.base}/ and SMTP {SINK_HOST}:{self.smtp_port}",
        ]
        if self.sources:
            lines.append(
                f"demo signing secrets (in {self.env_file}) for sources {', '.join(self.sources)}"
            )
        return lines


def restore(environ: MutableMapping[str, str], previous: Mapping[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (as `.env` files have them); a missing file is empty."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            out[name.strip()] = value.strip()
    return out


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    path.write_text(f"# written by `hub up` in demo mode ({LABEL}); read by `hub demo`\n" + body)
    path.chmod(0o600)


def demo_env(data_dir: Path) -> dict[str, str]:
    """What the last `hub up` in demo mode set (secrets included), for `hub demo`."""
    return read_env_file(data_dir / ENV_FILE)


def plan(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    http_port: int | None = None,
    smtp_port: int | None = None,
) -> StandIn | None:
    """Demo mode for this tree, or None when every example endpoint is configured.

    Problems in the mapping files are left to the apply step, which reports them all.
    """
    env = os.environ if environ is None else environ
    endpoints, _ = read_endpoints(settings.mappings_dir)
    sources, _ = read_sources(settings.mappings_dir)
    unset = [
        name for name, config in endpoints.items() if _destination_unset(config, env) is not None
    ]
    if not unset:
        return None
    saved = read_env_file(settings.data_dir / ENV_FILE)
    sink_secret = load_or_create_secret(settings.data_dir)
    # distinct from the web's port and from each other: none is bound until the tree starts
    http_port = http_port or free_port(SINK_HOST, avoid=[settings.port])
    smtp_port = smtp_port or free_port(SINK_HOST, avoid=[settings.port, http_port])
    stand_in = StandIn(http_port, smtp_port)
    stand_in.sink_secrets.append(sink_secret)
    for name in unset:
        _stand_in_endpoint(stand_in, name, endpoints[name], env, saved, sink_secret)
    for name, source in sources.items():
        _generate_source_secret(stand_in, name, source, env, saved)
    if stand_in.smtp_starttls:  # the tree trusts the sink's demo CA (on top of the usual ones)
        extra = [env["SSL_CERT_FILE"]] if env.get("SSL_CERT_FILE") else []
        bundle = write_trust_bundle(ensure_tls(settings.data_dir), extra)
        stand_in.env["SSL_CERT_FILE"] = str(bundle.resolve())
    # the sink is on loopback, closed to deliveries unless allowed (hub.delivery.egress)
    allowed = dict.fromkeys([*settings.egress_allow, SINK_HOST])
    stand_in.env["HUB_EGRESS_ALLOW"] = ",".join(allowed)
    stand_in.env_file = settings.data_dir / ENV_FILE
    write_env_file(stand_in.env_file, {**stand_in.env, "HUB_SINK_URL": stand_in.base})
    return stand_in


def _var(ref: str) -> str:
    return envrefs.variable_name(ref, DEMO_TENANT)


def _destination_unset(config: EndpointConfig, env: Mapping[str, str]) -> str | None:
    """The destination variable when it is an unset reference."""
    field = DESTINATION.get(config.kind)
    if field is None:  # whatsapp_cloud, amqp, google_calendar: no stand-in in the sink
        return None
    value = getattr(config, field)
    if isinstance(value, str) and envrefs.is_ref(value) and not env.get(_var(value)):
        return _var(value)
    return None


def _stand_in_endpoint(
    stand_in: StandIn,
    name: str,
    config: EndpointConfig,
    env: Mapping[str, str],
    saved: Mapping[str, str],
    sink_secret: str,
) -> None:
    stand_in.endpoints.append(name)
    if config.kind == EndpointKind.EMAIL and config.starttls:
        stand_in.smtp_starttls = True
    for field_name, ref in config.env_refs():
        variable = _var(ref)
        current = env.get(variable) or stand_in.env.get(variable)
        if current:
            if field_name == "signing_secret":
                stand_in.sink_secrets.append(current)
            if field_name == "client_token":
                stand_in.zapi_client_token = current
            continue
        value = _value(stand_in, name, config.kind, field_name, saved.get(variable), sink_secret)
        stand_in.env[variable] = value
        if field_name == "client_token":
            stand_in.zapi_client_token = value


def _value(
    stand_in: StandIn,
    name: str,
    kind: EndpointKind,
    field_name: str,
    saved: str | None,
    sink_secret: str,
) -> str:
    """The stand-in value of one endpoint field."""
    if field_name == "url":
        return f"{stand_in.base}/{name}"  # the first path segment names the target system
    if field_name == "signing_secret":
        return sink_secret
    if field_name == "host":
        return SINK_HOST
    if field_name == "port":
        return str(stand_in.smtp_port)
    if field_name == "from_addr":
        return "hub-demo@example.com"
    if field_name in ("instance", "token"):
        return f"demo-{field_name}"
    if field_name == "starttls":
        return "false"
    # secrets of our own making (client_token, password, header values) persist between runs
    return saved or f"demo-{secrets.token_hex(12)}"


def _generate_source_secret(
    stand_in: StandIn,
    name: str,
    source: SourceConfig,
    env: Mapping[str, str],
    saved: Mapping[str, str],
) -> None:
    if source.signature is None:
        return
    ref = source.signature.secrets[0]  # the current one; the others are for rotation
    variable = _var(ref)
    if env.get(variable) or variable in stand_in.env:
        return
    if saved.get(variable):
        value = saved[variable]
    elif source.signature.scheme == SignatureScheme.STANDARD_WEBHOOKS:
        value = new_secret()
    else:
        value = "demo_" + secrets.token_hex(16)
    stand_in.env[variable] = value
    stand_in.sources.append(name)
