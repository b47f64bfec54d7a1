"""Which addresses a client's URL may reach: every refused class, IPv4 and IPv6, and the
IPv6 forms that carry an IPv4 address."""

from __future__ import annotations

import ipaddress

import pytest

from promptforge.domain.netguard import address_problem, url_problem

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # the metadata server
    "169.254.0.1",
    "100.64.0.1",  # carrier-grade NAT
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "0.0.0.0",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.1",
    "198.18.0.1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # a metadata address on another cloud
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo carrying 10.0.0.1
    "2001:db8::1",  # documentation
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "151.101.1.69", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_cgnat_multicast_and_reserved_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_unicast_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_loopback_passes_only_when_the_operator_allowed_it() -> None:
    assert address_problem(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert address_problem(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) is not None


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://hooks.example.com/pf", False),
        ("https://8.8.8.8:8443/x?y=1", False),
        ("http://hooks.example.com/pf", True),
        ("ftp://hooks.example.com/", True),
        ("https://127.0.0.1/cb", True),
        ("https://169.254.169.254/computeMetadata/v1/", True),
        ("https://10.0.0.1/", True),
        ("https://[::1]/", True),
        ("https://[::ffff:127.0.0.1]/", True),
        ("https://[fe80::1%25eth0]/", True),
        ("https://localhost:8443/", True),
        ("https://metadata.google.internal/", True),
        ("https://printer.local/", True),
        ("https://user:pw@hooks.example.com/", True),
        ("https:///nohost", True),
        ("https://hooks.example.com:0/", True),
        ("https://hooks.example.com:99999/", True),
        ("not a url", True),
    ],
)
def test_client_urls(url: str, refused: bool) -> None:
    assert (url_problem(url) is not None) is refused, url_problem(url)


def test_plain_http_only_to_loopback_and_only_when_allowed() -> None:
    assert url_problem("http://127.0.0.1:9000/cb") is not None
    assert url_problem("http://127.0.0.1:9000/cb", allow_loopback_http=True) is None
    assert url_problem("http://localhost:9000/cb", allow_loopback_http=True) is None
    assert url_problem("http://10.0.0.1/cb", allow_loopback_http=True) is not None
    # https to loopback stays refused even then: the exemption is for a local stack's http receivers
    assert url_problem("https://127.0.0.1/cb", allow_loopback_http=True) is not None
