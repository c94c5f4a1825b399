"""The authority's codes and rules, pure."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from ccxlic_authority.core import Refused, counts, judge_account, peak_of, still_short, token_problem, verdict
from ccxlic_authority.core import Rules as AuthorityRules
from ccxlic_rules import codes
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert peak_of(reports) == {"standard": 5, "premium": 9, "ivr_ports": 1, "server": 0, "warm_standby": 0}
    with pytest.raises(Refused, match="needs a peak"):
        peak_of([{"interval_start": "x"}])


ACCOUNT = AuthorityRules()
A0 = datetime(2026, 3, 2, tzinfo=UTC)
POOL = {"standard": 40, "premium": 10, "ivr_ports": 20, "server": 1, "warm_standby": 1}


def _used(standard: int, premium: int) -> dict[str, int]:
    return {"standard": standard, "premium": premium, "ivr_ports": 0}


def test_an_account_is_out_of_compliance_from_its_first_short_report_and_keeps_that_start() -> None:
    first = judge_account(None, POOL, _used(30, 12), A0, ACCOUNT)
    assert first is not None and first.since == A0 and first.required["premium"] == 12
    later = judge_account(first, POOL, _used(30, 14), A0 + timedelta(days=5), ACCOUNT)
    assert later is not None and later.since == A0 and later.required["premium"] == 14


def test_within_its_licenses_again_before_the_grace_ends_the_account_is_in_compliance() -> None:
    short = judge_account(None, POOL, _used(30, 12), A0, ACCOUNT)
    assert judge_account(short, POOL, _used(30, 9), A0 + timedelta(days=10), ACCOUNT) is None


def test_after_the_grace_only_a_purchase_that_covers_what_caused_it_ends_it() -> None:
    """The vendor: "Purchase new licenses to exit the Enforcement state": usage that drops back does not."""
    short = judge_account(None, POOL, _used(30, 12), A0, ACCOUNT)
    after = A0 + timedelta(days=91)
    assert judge_account(short, POOL, _used(30, 9), after, ACCOUNT) == short
    bought = {**POOL, "premium": 12}
    assert judge_account(short, bought, _used(30, 9), after, ACCOUNT) is None


def test_an_instance_registering_continues_the_account_clock_unless_a_purchase_covers_it() -> None:
    short = judge_account(None, POOL, _used(30, 12), A0, ACCOUNT)
    assert still_short(short, POOL) == short
    assert still_short(short, {**POOL, "premium": 12}) is None
    assert still_short(None, POOL) is None


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=200)
    | st.sampled_from(["a.b", "x" * 9000, "e30.e30", "bnVsbA.AAAA", "\ud800.\udc00", "é.x", "_w.x", "e30\ud800.AAAA"])
)
def test_reading_any_text_as_a_code_refuses_it_with_a_reason_and_nothing_else(text: str) -> None:
    """A malformed identity certificate once gave the authority a 500: every refusal is a CodeError."""
    public = KEY.public_key()
    for read in (
        lambda: codes.verify(public, text, "identity-certificate", "the identity certificate"),
        lambda: codes.peek(text),
        lambda: codes.read_product_code(text, "reservation-request", "the request code"),
    ):
        with contextlib.suppress(codes.CodeError):
            read()
