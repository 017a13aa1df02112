"""Where deliveries may connect: the egress policy.

By default a delivery may not reach loopback, link-local (169.254.0.0/16, with the cloud
metadata address, and fe80::/10), private (10/8, 172.16/12, 192.168/16, 100.64/10) or
unique-local (fc00::/7) addresses, nor unspecified, multicast or reserved ones: a mapping that
points an endpoint at an internal service must be allowed on purpose. `HUB_EGRESS_ALLOW` opens
what an operator wants: CIDRs (`10.20.0.0/16`) or host names (`crm.internal`), comma-separated
or as a JSON list. `hub up`'s demo mode allows the demo sink.

The check is made on the address actually connected to: `GuardedBackend` (the Calendar
adapter's httpx, hub.delivery.calendar) resolves the host itself, checks every address and
connects to a checked one, and the curl senders
(hub.delivery.senders) hand curl the checked addresses and refuse any other socket (TLS still
verifies the host name), so a name that resolves to a public address when checked and to a
private one when connecting (DNS rebinding) cannot get through.
SMTP connects the same way (`EgressPolicy.connect`). A refusal raises EgressRefused before any
packet is sent; the adapters make it a permanent failure with the reason.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from hub.core.errors import EgressRefused, SettingError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in all but name
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), as text."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden_reason(address: Address) -> str | None:
    """Why `address` is closed by default, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "unique-local"
    if address.is_private or address in SHARED:
        return "private"
    if address.is_reserved:
        return "reserved"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """The addresses and hosts deliveries may reach beyond the public internet."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=resolve, compare=False)

    @classmethod
    def from_setting(cls, allow: Iterable[str], resolver: Resolver = resolve) -> EgressPolicy:
        networks: list[Network] = []
        hosts: set[str] = set()
        for item in allow:
            text = item.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if not _HOST.match(text.lower()):
                    raise SettingError(
                        "HUB_EGRESS_ALLOW", f"{text!r} is neither a CIDR nor a host name"
                    ) from None
                hosts.add(text.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts), resolver)

    def allowed_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` a delivery may connect to; EgressRefused if there are none."""
        name = host.strip("[]").lower().rstrip(".")
        try:
            literal: Address | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is None and name in self.hosts:
            return list(self.resolver(name, port))
        candidates = [name] if literal is not None else list(self.resolver(name, port))
        allowed, refused = [], []
        for text in candidates:
            address = ipaddress.ip_address(text.split("%")[0])
            reason = forbidden_reason(address)
            if reason is None or any(address in net for net in self.networks):
                allowed.append(text)
            else:
                refused.append(f"{text} ({reason})")
        if not allowed:
            shown = f"{host} -> " if literal is None else ""
            raise EgressRefused(
                f"egress refused: {shown}{', '.join(refused) or 'no address'} is not allowed "
                "for deliveries (HUB_EGRESS_ALLOW opens it)"
            )
        return allowed

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to an allowed address of `host` (the first that answers)."""
        last: OSError | None = None
        for address in self.allowed_addresses(host, port):
            try:
                return socket.create_connection((address, port), timeout)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last
