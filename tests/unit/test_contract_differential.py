"""The codec and the published JSON Schemas agree: a document one accepts, the other accepts.

Documents are generated from the schemas themselves and from the golden examples, then mutated (a value replaced
by an awkward one, a member dropped or added, a string at its length limits). For each one the codec's answer
(`decode`) must equal the schema's (`docs/schemas/<type>.json`, picked by the document's `type`).

How the schema side is read, as JSON Schema means it (and as a strict reading of our contract says):
- `pattern` is an ECMA 262 regex, where `$` matches only at the very end (Python's `$` also matches before a
  final newline, so it is applied here as `\\Z`);
- `format: date-time` is asserted (RFC 3339, checked by rfc3339-validator);
- `integer` means a JSON number written as an integer: `2.0` is not one (our contract reads integers strictly).
What no schema can say (the whole message's size in bytes, nesting deeper than the JSON parser's limit) is left
out here; tests in test_contract.py cover it.

`make test` runs a bounded number of examples; `make fuzz` many more (CCXLIC_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from ccxlic_contract import ContractError, decode
from ccxlic_contract.events import EVENT_CLASSES, type_name
from ccxlic_contract.examples import golden_examples
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
TYPES = sorted(type_name(c) for c in EVENT_CLASSES)
EXAMPLES = int(os.environ.get("CCXLIC_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- the schema side


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and re.search(_python(pattern), instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _python(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def _is_integer(_: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


Strict = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def schema(event_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "docs" / "schemas" / f"{event_type}.json").read_text())
    return loaded


@cache
def validator(event_type: str) -> Any:
    return Strict(schema(event_type), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_accepts(doc: Any) -> bool:
    if not isinstance(doc, dict) or doc.get("type") not in TYPES:
        return False  # the union's discriminator: no schema describes a document of another type
    return bool(validator(doc["type"]).is_valid(doc))


def codec_accepts(raw: bytes) -> bool:
    try:
        decode(raw)
    except ContractError:
        return False
    return True


def test_date_time_format_is_really_asserted() -> None:
    """If rfc3339-validator were missing, format would silently not be checked and the test would prove less."""
    assert "date-time" in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers
    doc = json.loads(golden_examples()["ccx.agent.signed_out"])
    doc["time"] = "2026-02-30T08:00:00Z"  # matches the pattern; not a calendar date
    assert not schema_accepts(doc) and not codec_accepts(json.dumps(doc).encode())


# ---------------------------------------------------------------- generating documents from the schemas

AWKWARD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2.0,
    1.5,
    1e3,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    10**6,
    10**6 + 1,
    2**63,
    "",
    "x",
    "3",
    "true",
    "*",
    "inst-1\n",
    "2026-03-02T08:00:00Z\n",
    "a\x00b",
    "\x00",
    "ünïcödé",
    "application/json; charset=utf-8",
    "application/json;",
    "text/plain",
    "APPLICATION/JSON",
    "2026-03-02T08:00:00Z",
    "2026-03-02T08:00:00+01:00",
    "2026-03-02T08:00:00.123456789Z",
    "2026-03-02T08:00:00.1234567891Z",
    "2026-03-02t08:00:00z",
    "2026-03-02 08:00:00Z",
    "2026-03-02T08:00:00",
    "2026-03-02T08:00Z",
    "2026-02-29T08:00:00Z",
    "2024-02-29T08:00:00Z",
    "2026-03-02T23:59:60Z",
    "1969-12-31T23:59:59Z",
    "2999-12-31T23:59:59Z",
    "2999-12-31T23:59:59-01:00",
    "3000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "1700000000",
    [],
    [None],
    [1, 1],
    ["chat", "chat"],
    {},
    {"a": 1},
    [[[[[]]]]],
]


def awkward() -> st.SearchStrategy[Any]:
    return st.sampled_from(AWKWARD).map(copy.deepcopy)  # fresh: a mutation must not change the list itself


LENGTHS = (0, 1, 63, 64, 65, 128, 129, 200, 201, 256, 257, 1024, 1025, 2000, 2001, 2048, 2049, 4000, 4001)
NAMES = ["partitionkey", "traceparent", "dataschema", "data_base64", "Upper", "x" * 20, "x" * 21, "id", "data"]


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def from_schema(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema node describes (mostly valid ones: mutations take care of the rest)."""
    node = _resolve(node, root)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([from_schema(n, root) for n in node["anyOf"]])
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "date-time":
            return st.datetimes(min_value=_dt(1970), max_value=_dt(2999), timezones=st.sampled_from(_ZONES)).map(
                lambda t: t.isoformat().replace("+00:00", "Z")
            )
        if "pattern" in node:
            return st.from_regex(_python(node["pattern"]), fullmatch=True)
        return st.text(min_size=node.get("minLength", 0), max_size=min(node.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**40)), node.get("maximum", 2**40))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(node.get("items", {}), root), max_size=min(node.get("maxItems", 3), 3)).map(
            lambda items: list(dict.fromkeys(json.dumps(i) for i in items) and items)
        )
    if kind == "object":
        props = node.get("properties", {})
        required = set(node.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, root) for k, v in props.items() if k in required},
            optional={k: from_schema(v, root) for k, v in props.items() if k not in required},
        )
    return awkward()


def _dt(year: int) -> Any:
    from datetime import datetime

    return datetime(year, 1, 1) if year < 2999 else datetime(2999, 12, 30)


def _zones() -> list[Any]:
    from datetime import UTC, timedelta, timezone

    return [UTC, timezone(timedelta(hours=1, minutes=30)), timezone(-timedelta(hours=7))]


_ZONES = _zones()


def generated() -> st.SearchStrategy[Any]:
    return st.sampled_from(TYPES).flatmap(lambda t: from_schema(schema(t), schema(t)))


def golden() -> st.SearchStrategy[Any]:
    return st.sampled_from(TYPES).map(lambda t: json.loads(golden_examples()[t]))


# ---------------------------------------------------------------- mutations


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    doc = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        target = _get(doc, path)
        how = draw(st.sampled_from(["replace", "drop", "add", "resize", "duplicate"]))
        if how == "replace" or (not path and how != "add"):
            value = draw(st.one_of(awkward(), st.text(max_size=5), st.integers()))
            if not path:
                doc = value
                continue
            _get(doc, path[:-1])[path[-1]] = value
        elif how == "drop" and path:
            del _get(doc, path[:-1])[path[-1]]
        elif how == "add" and isinstance(target, dict):
            target[draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=4)))] = draw(awkward())
        elif how == "resize" and isinstance(target, str) and path:
            size = draw(st.sampled_from(LENGTHS))
            _get(doc, path[:-1])[path[-1]] = (target or "a") * (size // max(1, len(target or "a")) + 1)
            _get(doc, path[:-1])[path[-1]] = _get(doc, path)[:size]
        elif how == "duplicate" and isinstance(target, list) and target:
            target.append(json.loads(json.dumps(target[0])))
    return doc


# ---------------------------------------------------------------- the properties


def _agree(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    by_schema, by_codec = schema_accepts(doc), codec_accepts(raw)
    assert by_schema == by_codec, f"schema {'accepts' if by_schema else 'refuses'}, codec disagrees: {raw[:600]!r}"


@FUZZ
@given(mutated(golden()))
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "data": {"inbound_ivr_ports": 2.0}})
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "data": {"inbound_ivr_ports": True}})
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "data": {"inbound_ivr_ports": "3"}})
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "time": 0})
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "subject": "inst-1\n"})
@example({**json.loads(golden_examples()["ccx.ports.sampled"]), "datacontenttype": "application/json; charset=utf-8"})
def test_codec_and_schema_agree_on_mutated_golden_examples(doc: Any) -> None:
    _agree(doc)


@FUZZ
@given(mutated(generated()))
def test_codec_and_schema_agree_on_generated_documents(doc: Any) -> None:
    _agree(doc)


@FUZZ
@given(generated())
def test_what_the_schema_describes_the_codec_accepts(doc: Any) -> None:
    """Unmutated documents built from a schema are mostly valid: this keeps the generator honest."""
    _agree(doc)
