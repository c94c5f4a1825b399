"""The event contract: golden examples, codec, topic registry, schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ccxlic_contract import TOPICS, ContractError, decode, decode_message, encode, topic_for
from ccxlic_contract.events import EVENT_CLASSES, AgentSignedIn, type_name
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.schemas import render
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
ALL_TYPES = sorted(type_name(c) for c in EVENT_CLASSES)


def test_every_type_has_a_golden_example() -> None:
    assert sorted(golden_examples()) == ALL_TYPES


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_golden_example_round_trips(event_type: str) -> None:
    raw = golden_examples()[event_type]
    event = decode(raw)
    assert event.type == event_type
    assert json.loads(encode(event)) == json.loads(raw)
    assert decode(encode(event)) == event


def test_every_type_is_on_exactly_one_topic() -> None:
    carried = [t for topic in TOPICS for t in topic.types]
    assert sorted(carried) == ALL_TYPES
    assert topic_for("ccx.agent.signed_in").name == "ccx.agent-activity"
    assert next(t for t in TOPICS if t.name == "licensing.entitlements").compacted


def _signed_in(**overrides: object) -> bytes:
    event = json.loads(golden_examples()["ccx.agent.signed_in"])
    for key, value in overrides.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"time": "2026-03-02T08:00:00"}, "time: must be an RFC 3339 time with an offset"),
        ({"time": "yesterday"}, "time:"),
        ({"subject": "has space"}, "subject: String should match pattern"),
        ({"subject": "x" * 65}, "subject:"),
        ({"id": None}, "id: Field required"),
        ({"specversion": "0.3"}, "specversion:"),
        ({"type": "ccx.agent.danced"}, "is not a type of the contract"),
        ({"data": {"agent_id": "a", "capabilities": ["telepathy"]}}, "data.capabilities.0"),
        ({"data": {"agent_id": "a", "capabilities": ["chat", "chat"]}}, "must not repeat"),
        ({"data": {"agent_id": "a", "colour": "red"}}, "data.colour: Extra inputs are not permitted"),
        ({"data": {}}, "data.agent_id: Field required"),
    ],
)
def test_bad_input_is_refused_with_a_clear_reason(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ContractError) as err:
        decode(_signed_in(**overrides))
    assert expected in str(err.value)


def test_not_json_is_refused() -> None:
    with pytest.raises(ContractError, match="Invalid JSON"):
        decode(b"\x00not json")


def test_any_rfc3339_offset_is_normalised_to_utc() -> None:
    event = decode(_signed_in(time="2026-03-02T09:30:00.25+01:30"))
    assert event.time == datetime(2026, 3, 2, 8, 0, 0, 250000, tzinfo=UTC)
    assert event.time.utcoffset() is not None and event.time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert b'"time":"2026-03-02T08:00:00.250000Z"' in encode(event)


def test_extension_attributes_are_kept_not_refused() -> None:
    event = decode(_signed_in(partitionkey="inst-1", traceparent="00-abc-01"))
    assert event.model_extra == {"partitionkey": "inst-1", "traceparent": "00-abc-01"}
    assert json.loads(encode(event))["partitionkey"] == "inst-1"


def test_defaults_for_optional_fields() -> None:
    event = decode(_signed_in(datacontenttype=None, specversion=None, data={"agent_id": "a-1"}))
    assert isinstance(event, AgentSignedIn)
    assert event.data.capabilities == () and event.data.supervisor is False
    assert event.specversion == "1.0" and event.datacontenttype == "application/json"


def test_binary_mode_message_is_decoded() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b-1"),
        ("ce_source", b"urn:test"),
        ("ce_type", b"ccx.agent.signed_out"),
        ("ce_time", b"2026-03-02T08:00:00Z"),
        ("ce_subject", b"inst-1"),
        ("content-type", b"application/json"),
    ]
    event = decode_message(b'{"agent_id": "a-7"}', headers)
    assert event.type == "ccx.agent.signed_out" and event.id == "b-1" and event.subject == "inst-1"


def test_structured_mode_with_and_without_header() -> None:
    raw = golden_examples()["ccx.agent.signed_out"]
    with_header = decode_message(raw, [("content-type", b"application/cloudevents+json; charset=UTF-8")])
    assert decode_message(raw, []) == with_header


def test_tombstone_is_refused() -> None:
    with pytest.raises(ContractError, match="no value"):
        decode_message(None, [])


def test_clock_tick_may_name_every_instance_but_others_may_not() -> None:
    assert decode(golden_examples()["licensing.clock.tick"]).subject == "*"
    with pytest.raises(ContractError, match="subject"):
        decode(_signed_in(subject="*"))


def test_generated_schemas_match_the_committed_copy() -> None:
    """CI fails when docs/schemas drifts from the models: run `make schemas` and commit."""
    committed = REPO / "docs" / "schemas"
    for name, text in render().items():
        assert (committed / name).read_text() == text, f"docs/schemas/{name} is stale: run `make schemas`"
    assert sorted(p.name for p in committed.glob("*.json")) == sorted(render())


# ---------------------------------------------------------------- the codec is total and strict


def test_a_null_header_value_is_a_refusal_not_a_crash() -> None:
    """aiokafka delivers a header whose value is null as None."""
    with pytest.raises(ContractError, match="is not a type of the contract"):
        decode_message(b"{}", [("ce_type", None)])  # type: ignore[list-item]
    raw = golden_examples()["ccx.agent.signed_out"]
    assert decode_message(raw, [("content-type", None), ("traceparent", None)]).type == "ccx.agent.signed_out"  # type: ignore[list-item]


def test_deeply_nested_data_is_refused_in_both_modes() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ContractError, match="recursion limit"):
        decode_message(deep, [("ce_type", b"ccx.agent.signed_out")])
    with pytest.raises(ContractError, match="recursion limit"):
        decode(b'{"data": ' + deep + b"}")


@pytest.mark.parametrize(
    "time",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "3000-01-01T00:00:00Z", "1969-12-31T23:59:59Z"],
)
def test_a_time_out_of_range_is_refused(time: str) -> None:
    with pytest.raises(ContractError, match=r"time: .*1970-2999"):
        decode(_signed_in(time=time))


@pytest.mark.parametrize(
    "time",
    [0, "1700000000000", "2026-03-02 08:00:00Z", "2026-03-02T08:00Z", "2026-03-02T23:59:60Z", "2026-03-02t08:00:00z"],
)
def test_only_rfc3339_strings_are_times(time: object) -> None:
    with pytest.raises(ContractError, match="time:"):
        decode(_signed_in(time=time))


@pytest.mark.parametrize("value", [True, "3", 2.0, -1, 1_000_001])
def test_counts_are_integers_in_range_without_coercion(value: object) -> None:
    raw = json.loads(golden_examples()["ccx.ports.sampled"])
    raw["data"]["inbound_ivr_ports"] = value
    with pytest.raises(ContractError, match=r"data\.inbound_ivr_ports"):
        decode(json.dumps(raw))


def test_flags_are_booleans_without_coercion() -> None:
    with pytest.raises(ContractError, match=r"data\.supervisor"):
        decode(_signed_in(data={"agent_id": "a", "supervisor": "yes"}))


def test_media_type_parameters_are_accepted() -> None:
    event = decode(_signed_in(datacontenttype="application/json; charset=utf-8"))
    assert event.datacontenttype == "application/json; charset=utf-8"
    with pytest.raises(ContractError, match="datacontenttype"):
        decode(_signed_in(datacontenttype="text/plain"))
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b-1"),
        ("ce_source", b"urn:t"),
        ("ce_type", b"ccx.agent.signed_out"),
    ]
    headers += [
        ("ce_time", b"2026-03-02T08:00:00Z"),
        ("ce_subject", b"i"),
        ("content-type", b"application/json; charset=utf-8"),
    ]
    assert decode_message(b'{"agent_id": "a"}', headers).datacontenttype == "application/json; charset=utf-8"


def test_strings_and_lists_are_bounded() -> None:
    with pytest.raises(ContractError, match="partitionkey"):
        decode(_signed_in(partitionkey="x" * 2049))
    with pytest.raises(ContractError, match=r"data\.agent_id"):
        decode(_signed_in(data={"agent_id": "a" * 129}))
    roster = json.loads(golden_examples()["ccx.agent.roster"])
    roster["data"]["agents"] = [{"agent_id": f"a{i}"} for i in range(10_001)]
    with pytest.raises(ContractError, match=r"data\.agents"):
        decode(json.dumps(roster))


def test_extension_attributes_are_bounded_in_name_number_and_value() -> None:
    with pytest.raises(ContractError, match="1-20 lowercase letters or digits"):
        decode(_signed_in(Trace="x"))
    with pytest.raises(ContractError, match="at most 20 extension attributes"):
        decode(_signed_in(**{f"ext{i}": "x" for i in range(21)}))
    with pytest.raises(ContractError, match="nested"):
        decode(_signed_in(nested={"a": 1}))
    assert decode(_signed_in(sequence=7, sampled=True)).model_extra == {"sequence": 7, "sampled": True}


def test_a_message_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    big = _signed_in(data={"agent_id": "a"}, padding="x")[:-1] + b', "y": "' + b"x" * 1_000_000 + b'"}'
    with pytest.raises(ContractError, match="larger than the limit of 1,000,000 bytes"):
        decode_message(big, [])


def test_binary_mode_data_cannot_smuggle_attributes() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b-1"),
        ("ce_source", b"urn:t"),
        ("ce_type", b"ccx.agent.signed_out"),
    ]
    headers += [("ce_time", b"2026-03-02T08:00:00Z"), ("ce_subject", b"inst-1")]
    with pytest.raises(ContractError, match="not one JSON value"):
        decode_message(b'{"agent_id": "a"}, "subject": "other"', headers)


FUZZ = int(__import__("os").environ.get("CCXLIC_FUZZ_EXAMPLES", "300"))
_header = st.tuples(
    st.sampled_from(["content-type", "ce_type", "ce_id", "ce_time", "ce_subject", "ce_source", "ce_data", "x"]),
    st.one_of(st.none(), st.binary(max_size=40), st.sampled_from([b"ccx.agent.signed_out", b"application/json"])),
)


@settings(max_examples=FUZZ, deadline=None)
@given(
    st.one_of(st.none(), st.binary(max_size=300), st.sampled_from(list(golden_examples().values()))),
    st.lists(_header, max_size=8),
)
def test_the_codec_is_total(value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
    """Whatever the bytes and headers: an event, or a ContractError with a reason."""
    try:
        event = decode_message(value, headers)  # type: ignore[arg-type]
    except ContractError as exc:
        reason = str(exc)
        assert reason, "a refusal says why"
        return
    assert decode(encode(event)) == event
