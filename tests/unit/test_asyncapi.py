"""The AsyncAPI 3.0 document of the contract (docs/schemas/asyncapi.json): valid against the AsyncAPI schema, complete
(every topic a channel with its Kafka binding, every type a message with its schema and golden example), and every
golden example valid against its message's payload as the document states it. Drift from the models fails
`make check-schemas` and tests/unit/test_contract.py, like the JSON Schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ccxlic_contract.events import EVENT_CLASSES, type_name
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.topics import TOPICS
from ccxlic_testing.plugin import tool_cache

ROOT = Path(__file__).parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "docs/schemas/asyncapi.json").read_text())
SPEC = tool_cache() / "asyncapi-specs-6.11.1" / "3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def asyncapi() -> jsonschema.Draft7Validator:
    assert SPEC.exists(), f"the AsyncAPI schema is not at {SPEC}: run `make asyncapi-spec`"
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def test_the_document_is_valid_asyncapi_3(asyncapi: jsonschema.Draft7Validator) -> None:
    assert DOC["asyncapi"] == "3.0.0"
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in asyncapi.iter_errors(DOC)]
    assert errors == []


def test_the_validation_refuses_what_asyncapi_3_does_not_allow(asyncapi: jsonschema.Draft7Validator) -> None:
    publish = copy.deepcopy(DOC)
    next(iter(publish["operations"].values()))["action"] = "publish"  # AsyncAPI 2's verb
    assert not asyncapi.is_valid(publish)
    no_address_type = copy.deepcopy(DOC)
    no_address_type["channels"]["ccx.agent-activity"]["address"] = 42
    assert not asyncapi.is_valid(no_address_type)


def test_every_topic_is_a_channel_and_every_type_a_message_on_its_topics() -> None:
    assert set(DOC["channels"]) == {t.name for t in TOPICS}
    for topic in TOPICS:
        channel = DOC["channels"][topic.name]
        assert channel["address"] == topic.name
        assert set(channel["messages"]) == set(topic.types | topic.forwards)
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == topic.partitions
        assert kafka["topicConfiguration"]["cleanup.policy"] == (["compact"] if topic.compacted else ["delete"])
        operation = DOC["operations"][f"publish.{topic.name}"]
        assert operation["action"] == "send" and operation["channel"] == {"$ref": f"#/channels/{topic.name}"}
    assert set(DOC["components"]["messages"]) == {type_name(c) for c in EVENT_CLASSES}


@pytest.mark.parametrize("name", sorted(type_name(c) for c in EVENT_CLASSES))
def test_each_message_carries_its_golden_example_which_its_payload_schema_accepts(name: str) -> None:
    message = DOC["components"]["messages"][name]
    golden = json.loads(golden_examples()[name])
    assert message["examples"] == [{"name": "golden", "payload": golden}]
    assert message["contentType"] == "application/cloudevents+json; charset=UTF-8"
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    assert message["traits"] == [{"$ref": "#/components/messageTraits/cloudevents-structured"}]
    # the payload as the document states it, its references resolved within the document
    root = {"components": DOC["components"], "$ref": f"#/components/messages/{name}/payload"}
    validator = jsonschema.Draft7Validator(root)
    assert list(validator.iter_errors(golden)) == []
    wrong = {**golden, "type": "not.this.type"}
    assert not validator.is_valid(wrong)
