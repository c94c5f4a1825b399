"""The authority's codes and rules, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_authority.core import Refused, counts, peak_of, token_problem, verdict
from ccxlic_rules import codes

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
KEY = codes.load_key(codes.new_key())


def test_a_signed_document_verifies_with_the_public_key_and_says_what_it_holds() -> None:
    doc = codes.sign(KEY, "identity-certificate", {"instance": "cc-1", "serial": "s1"})
    payload = codes.verify(codes.public_pem(KEY), doc, "identity-certificate", "the certificate")
    assert payload["instance"] == "cc-1" and payload["kind"] == "identity-certificate"


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def test_every_changed_character_of_a_signed_document_is_refused() -> None:
    """Every position, every character of the alphabet (exhaustive: a random sample once missed the signature's
    last character, whose unused bits decode to the same bytes)."""
    doc = codes.sign(KEY, "reservation-authorization", {"instance": "cc-1", "counts": {"premium": 5}})
    public = KEY.public_key()
    for i, was in enumerate(doc):
        for char in ALPHABET:
            if char == was:
                continue
            with pytest.raises(codes.CodeError):
                codes.verify(public, doc[:i] + char + doc[i + 1 :], "reservation-authorization", "the code")


def test_a_signature_changed_in_its_unused_base64_bits_is_refused() -> None:
    """Found by the property above: the signature's last base64 character carries 2 bits and 4 unused ones, so
    another character there decodes to the same signature. The document must be the text the authority wrote."""
    doc = codes.sign(KEY, "identity-certificate", {"instance": "cc-1"})
    last = doc[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = next(c for c in alphabet if c != last and alphabet.index(c) >> 4 == alphabet.index(last) >> 4)
    with pytest.raises(codes.CodeError, match="changed after it was signed"):
        codes.verify(KEY.public_key(), doc[:-1] + twin, "identity-certificate", "the certificate")


def test_another_authoritys_signature_is_refused_with_the_reason() -> None:
    other = codes.load_key(codes.new_key())
    doc = codes.sign(other, "reservation-authorization", {"instance": "cc-1"})
    with pytest.raises(codes.CodeError, match="not signed by this authority, or was changed"):
        codes.verify(KEY.public_key(), doc, "reservation-authorization", "the authorization code")


def test_a_code_of_another_kind_is_refused() -> None:
    doc = codes.sign(KEY, "identity-certificate", {"instance": "cc-1"})
    with pytest.raises(codes.CodeError, match="not a 'reservation-authorization'"):
        codes.verify(KEY.public_key(), doc, "reservation-authorization", "the authorization code")


def test_every_changed_character_of_a_product_code_fails_its_check() -> None:
    code = codes.product_code("reservation-request", {"instance": "cc-1", "nonce": "n1"})
    assert codes.read_product_code(code, "reservation-request", "the request code")["nonce"] == "n1"
    for i, was in enumerate(code):
        for char in ALPHABET:
            if char == was:
                continue
            with pytest.raises(codes.CodeError):
                codes.read_product_code(code[:i] + char + code[i + 1 :], "reservation-request", "the request code")


@pytest.mark.parametrize("bad", ["", "no-dot", "x" * 9000, "abc.", ".abc"])
def test_malformed_codes_are_refused_clearly(bad: str) -> None:
    with pytest.raises(codes.CodeError):
        codes.read_product_code(bad, "reservation-return", "the return code")


def test_the_verdict_uses_the_flex_pool_idle_premium_covers_standard() -> None:
    pool = {"standard": 40, "premium": 10, "ivr_ports": 20}
    ok = verdict(pool, {"standard": 45, "premium": 5, "ivr_ports": 20})
    assert ok["verdict"] == "in_compliance" and ok["shortfall"] == {"standard": 0, "premium": 0, "ivr_ports": 0}
    short = verdict(pool, {"standard": 40, "premium": 12, "ivr_ports": 21})
    assert short["verdict"] == "out_of_compliance"
    assert short["shortfall"] == {"standard": 0, "premium": 2, "ivr_ports": 1}
    assert short["licenses"]["premium"] == {
        "in_use": 12,
        "available": 10,
        "status": "out_of_compliance",
        "shortfall": 2,
    }


def test_tokens_expire_run_out_and_are_revoked() -> None:
    token = {"revoked_at": None, "expires_at": T0 + timedelta(days=30), "uses": 0, "max_uses": 2}
    assert token_problem(token, T0) is None
    assert "expired" in (token_problem(token, T0 + timedelta(days=30)) or "")
    assert "used 2 times" in (token_problem({**token, "uses": 2}, T0) or "")
    assert "revoked" in (token_problem({**token, "revoked_at": T0}, T0) or "")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "must be an object"),
        ({"gold": 1}, "unknown license 'gold'"),
        ({"premium": -1}, "premium must be a whole number"),
        ({"premium": True}, "premium must be a whole number"),
        ({"premium": 1.5}, "premium must be a whole number"),
    ],
)
def test_counts_refuse_what_is_not_counts(value: object, words: str) -> None:
    with pytest.raises(Refused, match=words):
        counts(value, "quantities")


def test_a_report_takes_each_licenses_highest_peak() -> None:
    reports = [
        {"peak": {"standard": 3, "premium": 9, "agents": 12, "ivr_ports": 1}},
        {"peak": {"standard": 5, "premium": 2, "agents": 7, "ivr_ports": 0}},
    ]
    assert peak_of(reports) == {"standard": 5, "premium": 9, "ivr_ports": 1}
    with pytest.raises(Refused, match="needs a peak"):
        peak_of([{"interval_start": "x"}])
