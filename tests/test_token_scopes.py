"""Which locations a remote token's scope globs admit (pure: no daemon). A glob is
matched against the whole location, case and all: never a prefix of it."""

from __future__ import annotations

import pytest

from runhook.config.remote import Token
from runhook.ingest.http import may_write


def token(*scopes: str) -> Token:
    return Token("t", b"", scopes, False)


@pytest.mark.parametrize(("scopes", "location", "admitted"), [
    (("project:acme/*",), "project:acme/vision", True),
    (("project:acme/*",), "project:acme-evil/x", False),  # a prefix match admitted it
    (("project:acme/*",), "project:acmeevil/x", False),
    (("project:acme/*",), "project:acm/x", False),
    (("project:acme/*",), "registry:acme/model", False),  # another kind of place
    (("project:acme/*",), "xproject:acme/vision", False),  # matched from the start
    (("project:acme/*",), "project:ACME/vision", False),  # case counts
    (("project:acme/vision",), "project:acme/vision", True),
    (("project:acme/vision",), "project:acme/vision2", False),
    (("project:acme/vision",), "project:acme/visio", False),
    (("project:acme/v?sion",), "project:acme/vision", True),
    (("project:acme/v?sion",), "project:acme/vsion", False),
    (("registry:acme/*", "project:acme/nlp"), "project:acme/nlp", True),
    (("registry:acme/*", "project:acme/nlp"), "registry:acme/model", True),
    (("registry:acme/*", "project:acme/nlp"), "project:acme/vision", False),
    (("*",), "project:anyone/anything", True),
    ((), "project:acme/vision", False),  # a commands-only token writes nothing
])
def test_a_scope_glob_admits_exactly_the_locations_it_names(scopes, location, admitted):
    assert may_write(token(*scopes), location) is admitted
