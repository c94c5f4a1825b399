"""Golden example JSON for every type of the contract, shipped with the package."""

from __future__ import annotations

from importlib import resources


def golden_examples() -> dict[str, bytes]:
    """type -> the example's bytes, one file `examples/<type>.json` each."""
    folder = resources.files("ccxlic_contract") / "examples"
    return {
        entry.name.removesuffix(".json"): entry.read_bytes()
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }
