"""The scope grammar, and which needs a key's scopes grant."""

from __future__ import annotations

import pytest

from prodgate.exceptions import UsageError
from prodgate.identity.scopes import Need, grants, parse, services

VALID = [
    "predict:claims",
    "predict:*",
    "feedback:claims",
    "feedback:*",
    "admin:claims",
    "admin:*",
    "review",
    "audit:read",
    "admin",
    "predict:fraud.v2_eu-west",
]


@pytest.mark.parametrize("scope", VALID)
def test_parse_accepts_every_kind_of_scope(scope: str) -> None:
    assert parse(scope) == scope
    assert parse(f"  {scope} ") == scope


@pytest.mark.parametrize(
    "text",
    [
        "",
        "predict",
        "predict:",
        "feedback",
        "review:claims",
        "audit",
        "audit:write",
        "audit:*",
        "delete:claims",
        "Predict:claims",
        "ADMIN",
        "predict:-claims",
        "predict:a b",
        "predict:claims:extra",
        "predict:**",
        "predict:" + "x" * 65,
    ],
)
def test_parse_refuses_anything_else_naming_the_valid_scopes(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    message = caught.value.detail
    assert repr(text) in message
    for valid in ("predict:SERVICE", "feedback:SERVICE", "admin:SERVICE", "review", "audit:read"):
        assert valid in message
    assert "\n" not in message


def test_admin_grants_everything() -> None:
    for need in (
        Need("predict", "claims"),
        Need("feedback", "fraud"),
        Need("admin", "claims"),
        Need("admin"),
        Need("review"),
        Need("audit:read"),
    ):
        assert grants(["admin"], need), need


def test_admin_of_a_service_governs_it_and_nothing_else() -> None:
    scopes = ["admin:claims"]
    assert grants(scopes, Need("admin", "claims"))
    assert not grants(scopes, Need("admin", "fraud"))
    assert not grants(scopes, Need("predict", "claims"))
    assert not grants(scopes, Need("feedback", "claims"))
    assert not grants(scopes, Need("admin"))  # not the global admin
    assert not grants(scopes, Need("review"))
    assert not grants(scopes, Need("audit:read"))
    assert grants(["admin:*"], Need("admin", "fraud"))
    assert not grants(["admin:*"], Need("predict", "fraud"))
    assert not grants(["admin:*"], Need("admin"))


def test_predict_everywhere_is_predict_only() -> None:
    scopes = ["predict:*"]
    assert grants(scopes, Need("predict", "claims"))
    assert grants(scopes, Need("predict", "anything-else"))
    assert not grants(scopes, Need("admin", "claims"))
    assert not grants(scopes, Need("feedback", "claims"))
    assert not grants(scopes, Need("admin"))
    assert not grants(scopes, Need("review"))


def test_a_named_service_is_that_service_only() -> None:
    scopes = ["predict:claims", "feedback:fraud"]
    assert grants(scopes, Need("predict", "claims"))
    assert not grants(scopes, Need("predict", "fraud"))
    assert grants(scopes, Need("feedback", "fraud"))
    assert not grants(scopes, Need("feedback", "claims"))


def test_standalone_scopes_grant_their_own_need() -> None:
    assert grants(["audit:read"], Need("audit:read"))
    assert not grants(["audit:read"], Need("review"))
    assert not grants(["audit:read"], Need("admin", "claims"))
    assert grants(["review"], Need("review"))
    assert not grants(["review"], Need("audit:read"))
    assert not grants([], Need("review"))
    # Any one scope is enough.
    assert grants(["predict:claims", "review"], Need("review"))


def test_a_need_prints_as_the_scope_that_grants_it() -> None:
    assert str(Need("predict", "claims")) == "predict:claims"
    assert str(Need("audit:read")) == "audit:read"


def test_services_a_kind_reaches() -> None:
    assert services(["predict:a", "predict:b", "admin:c"], "predict") == {"a", "b"}
    assert services(["predict:a", "admin:c"], "admin") == {"c"}
    assert services(["predict:a"], "feedback") == set()
    assert services(["predict:a", "predict:*"], "predict") is None
    assert services(["review", "admin"], "predict") is None
    assert services(["admin:*"], "predict") == set()


def test_services_of_a_kind_that_names_none() -> None:
    assert services(["audit:read"], "audit:read") is None
    assert services(["admin"], "review") is None
    assert services(["predict:*"], "review") == set()
