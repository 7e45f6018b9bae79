"""Find and parse the JSON Schemas that document dsr's files (`schemas/<name>.schema.json`).

A wheel carries them inside the package (`reconciler/schemas`, via hatch force-include); an
editable install reads the repository's top-level `schemas/`. This module only reads schemas:
it must not validate anything or know what a schema says.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

_REPOSITORY_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `<name>.schema.json`. Cached and shared: callers must not mutate it."""
    filename = f"{name}.schema.json"
    packaged = files("reconciler") / "schemas" / filename
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:
        text = (_REPOSITORY_SCHEMAS / filename).read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))
