"""The SSRF guard: which ``webhook_url`` the service may POST to.

``check_webhook_url`` runs at submission (the gateway) and again before every attempt, after DNS (the webhook
worker). It refuses non-http(s) schemes, credentials, odd IP address forms, and hosts with any loopback, private,
link-local, multicast, reserved, CGNAT or cloud-metadata address, unless an operator's ``AllowList`` lets them
through. It changes with what the network around the service looks like, not with how events are signed or sent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

MAX_URL_CHARS = 2048


class WebhookUrlRefused(InvalidRequest):
    """A ``webhook_url`` we will not send to (bad scheme, credentials, or a non-public address)."""

    code = "webhook_url_refused"
    status_code = 422


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks that may receive webhooks even though they are private or loopback."""

    hosts: frozenset[str] = field(default_factory=frozenset)
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        """``"localhost,receiver.internal,10.0.0.0/8,127.0.0.1"`` (comma or whitespace separated; a bare address is
        a /32 or /128). Raises ``ValueError`` naming an entry that is neither a host name nor an address/CIDR."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in (part for part in re.split(r"[,\s]+", value) if part):
            candidate = item[1:-1] if item.startswith("[") and item.endswith("]") else item
            try:
                networks.append(ipaddress.ip_network(candidate, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if not _HOST_NAME.match(name) or _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
                raise ValueError(f"webhook allow-list entry {item!r} is neither a host name nor an IP address/CIDR")
            hosts.add(name)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def covers(self, address: IPAddress) -> bool:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in net or (mapped is not None and mapped in net) for net in self.networks)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), the way the connection will resolve it; none when the
    name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, NAT64 (RFC 6052) or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def non_public_kind(address: IPAddress) -> str | None:
    """Why an address may not receive webhooks ("loopback", "private", ...), or None for a public address."""
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public_kind(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What ``inet_aton`` makes of ``host`` (``2130706433``, ``0x7f.1``, ``0177.0.0.1``...), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part.startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _refuse(message: str, **details: Any) -> WebhookUrlRefused:
    return WebhookUrlRefused(f"webhook_url {message}", details={"field": "webhook_url", **details})


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def check_webhook_url(url: str, allow: AllowList, *, resolve: Resolver = resolve_host) -> list[str]:
    """Refuse (``WebhookUrlRefused``) a URL we must not POST to; return the addresses its host resolves to.

    Refused: schemes other than http(s), credentials in the URL, no host, over 2048 characters, IP addresses in
    non-standard forms (``2130706433``, ``0x7f.1``), names that do not resolve, and hosts with ANY address that is
    loopback, private, link-local, multicast, unspecified, reserved, CGNAT or cloud metadata (IPv4-mapped, NAT64 and
    6to4 IPv6 addresses are judged by their IPv4 address) -- unless the host is in ``allow.hosts`` or the address is
    in ``allow.networks``. The URL is parsed by httpx, as it will be when the event is sent.

    The error's ``details["reason"]`` says why in one word or two ("scheme", "credentials", "numeric_form",
    "unresolvable", "loopback", "private", ...). For a host name, messages say what kind of address it resolves to
    but not the address (which would map the server's internal DNS for whoever asks).
    """
    if len(url) > MAX_URL_CHARS:
        raise _refuse(f"is longer than {MAX_URL_CHARS} characters", reason="too_long")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        raise _refuse("contains whitespace, control characters or backslashes", reason="invalid")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
        raw_host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError, TypeError):
        raise _refuse("is not a valid URL", reason="invalid") from None
    if parsed.scheme not in ("http", "https"):
        raise _refuse(f"must use http or https, not {parsed.scheme[:20] or 'no scheme'!r}", reason="scheme")
    if parsed.userinfo:
        raise _refuse("must not contain a user name or password", reason="credentials")
    if not raw_host:
        raise _refuse("has no host", reason="invalid")
    if port is not None and not 1 <= port <= 65535:
        raise _refuse("has an invalid port", reason="invalid")
    port = port or (443 if parsed.scheme == "https" else 80)
    host = raw_host.lower()
    name = host.rstrip(".")

    literal: IPAddress | None = None
    if ":" in host:  # an IPv6 literal (httpx gives it without brackets)
        literal = _parse_address(host) if "%" not in host else None
        if literal is None:
            raise _refuse("has an invalid IPv6 address", reason="invalid")
    elif not _HOST_NAME.match(name):
        raise _refuse("has an invalid host name", reason="invalid")
    elif _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):  # ends in a number: an IPv4 address, or nothing valid
        try:
            literal = ipaddress.IPv4Address(name)
        except ValueError:
            legacy = _legacy_ipv4(name)
            if legacy is None:
                raise _refuse("has an invalid IPv4 address", reason="invalid") from None
            raise _refuse(
                f"writes an IP address in a non-standard form ({legacy}); use dotted decimal", reason="numeric_form"
            ) from None

    if literal is not None:
        addresses = [str(literal)]
    else:
        if name in allow.hosts:
            resolved = resolve(raw_host, port)
            if not resolved:
                raise _refuse(f"host {name} does not resolve", reason="unresolvable")
            return resolved
        if name in _METADATA_HOSTS:
            raise _refuse(f"host {name} is a cloud metadata service", reason="cloud metadata")
        addresses = resolve(raw_host, port)
        if not addresses:
            raise _refuse(f"host {name} does not resolve", reason="unresolvable")

    for text in addresses:
        address = _parse_address(text)
        if address is None:
            raise _refuse(f"host {name} resolves to something that is not an IP address", reason="invalid")
        if allow.covers(address):
            continue
        kind = non_public_kind(address)
        if kind is None:
            continue
        article = "an" if kind[0] in "aeiou" else "a"
        if literal is not None:
            embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
            shown = f"{address}, which is {embedded}" if embedded is not None else str(address)
            raise _refuse(f"points to {article} {kind} address ({shown})", reason=kind)
        raise _refuse(f"host {name} resolves to {article} {kind} address", reason=kind)
    return addresses
