"""The runtime's auth rules that need no database: password hashing, names and passwords accepted, roles, and the
policy of which requests need which role."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from ccxlic_runtime.auth import (
    AuthError,
    Role,
    check_password,
    check_user,
    hash_password,
    password_matches,
    writes_need_admin,
)


def test_passwords_are_argon2id_hashes_that_only_the_password_matches() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert password_matches(stored, "correct horse battery")
    assert not password_matches(stored, "correct horse batterY")
    assert not password_matches("not a hash", "correct horse battery")
    assert hash_password("correct horse battery") != stored  # salted


def test_names_and_passwords_are_checked_with_a_reason() -> None:
    assert check_user("alice@example.com") == "alice@example.com"
    for bad in ("", "a b", "x" * 65, "<script>", "admin\n"):  # Python's `$` once let "admin\n" through
        with pytest.raises(AuthError, match="user name"):
            check_user(bad)
    with pytest.raises(AuthError, match="at least 12 characters; this one has 5"):
        check_password("short")


def test_only_an_admin_may_change() -> None:
    assert Role.admin.allows(Role.admin) and Role.admin.allows(Role.viewer)
    assert Role.viewer.allows(Role.viewer) and not Role.viewer.allows(Role.admin)


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/v1/silences", Role.viewer),
        ("POST", "/v1/silences", Role.admin),
        ("DELETE", "/v1/silences/x", Role.admin),
        ("HEAD", "/v1/silences", Role.viewer),
        ("GET", "/v1/alerts", None),
        ("POST", "/v1/product/register", None),
    ],
)
def test_writes_need_an_admin_under_the_prefixes(method: str, path: str, needed: Role | None) -> None:
    assert writes_need_admin(("/v1/silences",))(make_mocked_request(method, path)) is needed
