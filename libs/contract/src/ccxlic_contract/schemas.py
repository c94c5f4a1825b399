"""JSON Schemas of the contract, one file per type, and the AsyncAPI 3.0 document (asyncapi.json), generated from the
models.

python -m ccxlic_contract.schemas docs/schemas          write them
python -m ccxlic_contract.schemas docs/schemas --check  exit 1 when the files differ from the models
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ccxlic_contract.asyncapi import render_asyncapi
from ccxlic_contract.events import EVENT_CLASSES, type_name
from ccxlic_contract.topics import TOPICS, topic_for

SCHEMA_BASE = "https://ccx-licensing.example/schemas/"


def render() -> dict[str, str]:
    """File name -> content for every type, plus an index."""
    files: dict[str, str] = {}
    index = []
    for cls in EVENT_CLASSES:
        name = type_name(cls)
        schema = cls.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_BASE}{name}.json",
            **schema,
        }
        schema["title"] = name
        files[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        entry: dict[str, object] = {"type": name, "topic": topic_for(name).name, "schema": f"{name}.json"}
        forwarded = [t.name for t in TOPICS if name in t.forwards]
        if forwarded:
            entry["forwarded_on"] = forwarded
        index.append(entry)
    files["index.json"] = json.dumps(index, indent=2) + "\n"
    files["asyncapi.json"] = json.dumps(render_asyncapi(), indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        print("usage: python -m ccxlic_contract.schemas DIR [--check]", file=sys.stderr)
        return 2
    out = Path(args[0])
    files = render()
    if "--check" in argv:
        stale = sorted(
            name for name, text in files.items() if not (out / name).exists() or (out / name).read_text() != text
        )
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in files) if out.exists() else []
        if stale or extra:
            print(
                f"docs/schemas is out of date with the models: changed {stale or '-'}, no longer generated "
                f"{extra or '-'}. Run `make schemas` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"schemas: {len(files)} files match the models")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (out / name).write_text(text)
    print(f"schemas: wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
