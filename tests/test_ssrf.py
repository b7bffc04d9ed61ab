"""The SSRF guard on addresses and URLs."""

from __future__ import annotations

import aiohttp
import pytest

from runhook.config.secrets import Redactor
from runhook.delivery import transport
from runhook.delivery.channels.webhook import Request
from runhook.delivery.ssrf import (
    DestinationRefused,
    GuardedResolver,
    check_url,
    connector,
    refused_address,
)


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


# Spellings of loopback that aiohttp/yarl turn into 127.0.0.1 (IDNA maps full-width
# digits and ideographic full stops), or that the system resolver reads as an
# IPv4 number (inet_aton's integer, short, octal and hex forms).
NORMALISED = ["１２７.０.０.１", "127。0。0。1", "127．0．0．1", "𝟏𝟐𝟕.0.0.1"]
NONCANONICAL = ["2130706433", "127.1", "0", "127.0.0.1.", "0x7f.0.0.1", "0177.0.0.1",
                "127.000.000.001", "0x7f000001"]


@pytest.mark.parametrize("host", NORMALISED)
def test_the_host_is_checked_as_the_client_will_connect_to_it(host):
    with pytest.raises(DestinationRefused, match="127.0.0.1 is a loopback address"):
        check_url(f"http://{host}:8080/hook", allow_http=True, allow_private=False)


@pytest.mark.parametrize("host", NONCANONICAL)
def test_noncanonical_ipv4_is_refused_even_with_allow_private(host):
    with pytest.raises(DestinationRefused, match="not a canonical IPv4 address"):
        check_url(f"http://{host}:8080/hook", allow_http=True, allow_private=True)


@pytest.mark.parametrize("host", NORMALISED + NONCANONICAL + ["[::ffff:127.0.0.1]", "localhost"])
async def test_hostile_spellings_never_reach_a_loopback_receiver(receiver, host):
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://{host}:{port}/hook"
    refused = await deliver(url, allow_private=False)
    assert refused
    assert receiver.requests == []


async def deliver(url: str, allow_private: bool, precheck: bool = True) -> bool:
    """What a delivery actor does with a URL: check it, then post over a session on
    the integration's connector. True when the guard refused it."""
    try:
        if precheck:
            check_url(url, allow_http=True, allow_private=allow_private)
    except DestinationRefused:
        return True
    async with aiohttp.ClientSession(connector=connector(4, allow_private)) as session:
        answer = await transport.post(session, Request(url, {}, b"{}"), 5.0, Redactor({}))
    return answer.refused


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost", "0x7f.0.0.1", *NORMALISED])
async def test_the_connector_alone_refuses_every_connection_to_loopback(receiver, host):
    """Without the URL check, the connector still sees each connection's address:
    aiohttp connects to literal IPs without asking the resolver."""
    port = receiver.url.split(":")[2].split("/")[0]
    assert await deliver(f"http://{host}:{port}/hook", allow_private=False, precheck=False)
    assert receiver.requests == []


async def test_allow_private_reaches_loopback_through_the_same_connector(receiver):
    port = receiver.url.split(":")[2].split("/")[0]
    assert not await deliver(f"http://１２７.０.０.１:{port}/hook", allow_private=True)
    assert len(receiver.requests) == 1
