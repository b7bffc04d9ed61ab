"""The SSRF guard on addresses and URLs."""

from __future__ import annotations

import pytest

from runhook.delivery.ssrf import DestinationRefused, GuardedResolver, check_url, refused_address


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                     "169.254.169.254", "::1", "fe80::1", "224.0.0.1",
                                     "0.0.0.0", "::ffff:127.0.0.1", "fd00::1"])
def test_non_public_addresses_are_refused(address):
    assert refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address):
    assert refused_address(address) is None


def test_urls():
    check_url("https://hooks.example.com/x", allow_http=False, allow_private=False)
    with pytest.raises(DestinationRefused, match="https only"):
        check_url("http://hooks.example.com/x", allow_http=False, allow_private=False)
    check_url("http://hooks.example.com/x", allow_http=True, allow_private=False)
    with pytest.raises(DestinationRefused, match="169.254.169.254 is a link-local"):
        check_url("https://169.254.169.254/latest", allow_http=False, allow_private=False)
    check_url("https://169.254.169.254/latest", allow_http=False, allow_private=True)


async def test_resolver_refuses_a_name_that_resolves_to_loopback():
    resolver = GuardedResolver()
    try:
        with pytest.raises(DestinationRefused, match="localhost resolves to 127.0.0.1"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()
