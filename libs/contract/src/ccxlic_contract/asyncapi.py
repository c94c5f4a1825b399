"""The contract as an AsyncAPI 3.0 document, generated from the models and the topic registry.

Channels are the topics (with their Kafka binding: partitions, cleanup policy), each listing every type it carries
(its own and those it forwards); operations say who publishes each; messages are the event types, each with its
payload schema (the JSON Schema of docs/schemas, its definitions moved to `components/schemas`), its golden example,
its Kafka binding (the record key) and the CloudEvents structured-mode trait (the `content-type` header).
`python -m ccxlic_contract.schemas` writes it to docs/schemas/asyncapi.json with the JSON Schemas, and `--check`
fails when it drifts from the models.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

from ccxlic_contract.codec import STRUCTURED_CONTENT_TYPE as CONTENT_TYPE
from ccxlic_contract.events import EVENT_CLASSES, type_name
from ccxlic_contract.examples import golden_examples
from ccxlic_contract.topics import TOPICS, Topic

KAFKA_BINDING = "0.5.0"


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _hoist(schema: Any, defs: dict[str, Any], owner: str) -> Any:
    """The schema with `#/$defs/X` references pointing at `#/components/schemas/X`; its definitions go to `defs`
    (one definition per name: the models share them, and a name meaning two things is an error)."""
    if isinstance(schema, dict):
        for name, body in schema.pop("$defs", {}).items():
            hoisted = _hoist(body, defs, owner)
            if name in defs and defs[name] != hoisted:
                raise ValueError(f"two definitions named {name} differ ({owner})")
            defs[name] = hoisted
        return {
            k: ("#/components/schemas/" + v.removeprefix("#/$defs/") if k == "$ref" else _hoist(v, defs, owner))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_hoist(v, defs, owner) for v in schema]
    return schema


def _channel(topic: Topic) -> dict[str, Any]:
    carried = sorted(topic.types | topic.forwards)
    forwarded = sorted(topic.forwards)
    description = f"Published by {topic.publisher}; keyed by the event's `subject` (the product instance)."
    if forwarded:
        description += " Also carries, unchanged and in the order handled, the inputs the next service needs: " + (
            ", ".join(f"`{t}`" for t in forwarded) + "."
        )
    return {
        "address": topic.name,
        "title": topic.name,
        "description": description + " With `CCXLIC_TOPIC_PREFIX` set, every topic name starts with it.",
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in carried},
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {"cleanup.policy": ["compact"] if topic.compacted else ["delete"]},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def render_asyncapi() -> dict[str, Any]:
    examples = golden_examples()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in EVENT_CLASSES:
        name = type_name(cls)
        payload = _hoist(cls.model_json_schema(mode="validation"), schemas, name)
        payload["title"] = name
        messages[name] = {
            "name": name,
            "title": name,
            "summary": _first_line(cls.__doc__),
            "contentType": CONTENT_TYPE,
            "payload": payload,
            "examples": [{"name": "golden", "payload": json.loads(examples[name])}],
            "traits": [{"$ref": "#/components/messageTraits/cloudevents-structured"}],
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "the event's `subject`: the product instance id"},
                    "bindingVersion": KAFKA_BINDING,
                }
            },
            "x-cloudevents": {"specversion": "1.0", "type": name, "mode": "structured"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ccx-licensing event contract",
            "version": version("ccxlic-contract"),
            "description": (
                "CloudEvents 1.0 in structured JSON mode, one event per Kafka record, keyed by the event's subject "
                "(the product instance). The names are fixed: a type may gain optional fields, a field never "
                "changes meaning, and a breaking change is a new type. Generated from the models "
                "(libs/contract); the JSON Schemas are in docs/schemas."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack (`make up`): PLAINTEXT.",
            },
            "local-scram-tls": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka-secure",
                "description": "`KAFKA_SECURITY=scram-tls make up`: SASL_SSL with SCRAM-SHA-512.",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            },
        },
        "channels": {topic.name: _channel(topic) for topic in TOPICS},
        "operations": {
            f"publish.{topic.name}": {
                "action": "send",
                "title": f"{topic.publisher} publishes to {topic.name}",
                "channel": {"$ref": f"#/channels/{topic.name}"},
                "messages": [{"$ref": f"#/channels/{topic.name}/messages/{t}"} for t in sorted(topic.types)],
            }
            for topic in TOPICS
        },
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "messageTraits": {
                "cloudevents-structured": {
                    "summary": "CloudEvents 1.0, structured mode: the record's value is the whole event as JSON.",
                    "headers": {
                        "type": "object",
                        "properties": {
                            "content-type": {
                                "type": "string",
                                "const": CONTENT_TYPE,
                                "description": "says structured mode to CloudEvents SDKs (a record without it is "
                                "read too)",
                            }
                        },
                    },
                }
            },
            "securitySchemes": {"scram": {"type": "scramSha512", "description": "SASL/SCRAM-SHA-512 over TLS"}},
        },
    }
