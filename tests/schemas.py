"""Validation of mbtest's documents against the JSON Schemas it ships (mbtest/schemas/),
and of the spelling every document promises: no JSON number a reader would round, every
64-bit value a decimal string, every point in time RFC 3339."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from mbtest.jsondoc import TIME_KEYS, U64_KEYS

BASE = "https://mbtest.invalid/schemas/"


def _registry() -> Registry:
    folder = resources.files("mbtest") / "schemas"
    pairs = []
    for entry in folder.iterdir():
        if entry.name.endswith(".schema.json"):
            pairs.append((BASE + entry.name, Resource.from_contents(json.loads(entry.read_text()))))
    return Registry().with_resources(pairs)


REGISTRY = _registry()


def validate(document: Any, kind: str) -> None:
    """Raise jsonschema.ValidationError unless the document is a valid ``kind`` document."""
    schema = REGISTRY.contents(f"{BASE}{kind}.schema.json")
    validator = jsonschema.Draft202012Validator(
        schema, registry=REGISTRY, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(document)
    assert_spelled(document)


def assert_spelled(document: Any, path: str = "") -> None:
    """No integer beyond 2**53; 64-bit keys hold strings; time keys hold RFC 3339 text."""
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}"
            if key in U64_KEYS and isinstance(value, int) and not isinstance(value, bool):
                raise AssertionError(f"{where} = {value}: a 64-bit value as a JSON number")
            if key in TIME_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                raise AssertionError(f"{where} = {value}: a time as a number")
            assert_spelled(value, where)
    elif isinstance(document, list):
        for i, value in enumerate(document):
            assert_spelled(value, f"{path}[{i}]")
    elif isinstance(document, int) and not isinstance(document, bool):
        assert abs(document) <= 2**53, f"{path} = {document}: beyond what readers keep exactly"


def lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
