"""Which network addresses a URL chosen by a client may reach.

A client names callback URLs (and, where the operator allows it, provider URLs). Sent
as they are, they would let any tenant make the deployment's workers reach loopback,
the VPC, the metadata server, or any address behind a DNS name. Only public unicast
addresses pass. IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, NAT64,
Teredo) are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that do."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` may not be reached from a client's URL, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            problem = address_problem(inner, allow_loopback)
            return f"{problem} (inside an IPv6 address)" if problem else None
        if ip in _NAT64_LOCAL:
            return "a local NAT64 address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address (the metadata server among them)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a carrier-grade NAT address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private or reserved address"
    return None


def url_problem(url: str, allow_loopback_http: bool = False) -> str | None:
    """Why a client's URL is refused before any lookup, or None.

    https only, to public addresses; plain http only to loopback, and only where the
    operator allowed it for a local stack; no credentials in the URL; a host is required. An address literal is
    judged here; a name is judged when it is resolved, at every use.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if port == 0:
        return "has an invalid port"
    literal = parse_address(host)
    if parts.scheme == "http":
        if not (allow_loopback_http and (host == "localhost" or (literal is not None and literal.is_loopback))):
            return "must be an https:// URL"
        return None
    if parts.scheme != "https":
        return "must be an https:// URL"
    if literal is not None:
        problem = address_problem(literal)
        return f"points to {problem}" if problem else None
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return "points to a local or internal name"
    return None


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is a literal one (brackets and zone removed)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
