"""Writes the JSON Schema of every topic's payload to ``schemas/json/`` for producers in other
languages: ``python -m schemas.export``. A unit test fails when these files drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from schemas.models import INPUT_MODELS, OUTPUT_MODELS

OUT = Path(__file__).with_name("json")


def schemas() -> dict[str, str]:
    """File name -> JSON text, for every contract topic."""
    out = {}
    for topic, model in {**INPUT_MODELS, **OUTPUT_MODELS}.items():
        mode: Literal["validation", "serialization"] = (
            "validation" if topic in INPUT_MODELS else "serialization"
        )
        schema = model.model_json_schema(mode=mode)
        schema["$id"] = f"urn:smi-streams:topic:{topic}"
        schema["title"] = f"{topic} ({model.__name__})"
        out[f"{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in schemas().items():
        (OUT / name).write_text(text)
        print(OUT / name)


if __name__ == "__main__":
    main()
