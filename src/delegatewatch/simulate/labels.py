"""The ground truth a simulation writes beside its evidence (``labels.json``): the run's parameters,
the files written, and for every injected scenario instance the records that belong to it, named the
way findings' evidence names them (docs/simulate.md, "Labels")."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from delegatewatch.simulate.model import Instance, LabelRecord

KIND = "delegatewatch-simulation-labels"
VERSION = 1


def write_labels(path: Path, params: dict[str, Any], files: dict[str, int], instances: list[Instance]) -> None:
    doc = {"kind": KIND, "version": VERSION, "parameters": params, "files": files,
           "instances": [asdict(i) for i in instances]}
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")


class LabelsError(ValueError):
    pass


def read_labels(path: str | Path) -> tuple[dict[str, Any], list[Instance]]:
    """Parameters and instances of a labels file; ``LabelsError`` says what is wrong with it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelsError(f"{path}: cannot read labels ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise LabelsError(f"{path}: not a simulation labels file (expected \"kind\": \"{KIND}\")")
    instances = []
    for n, raw in enumerate(doc.get("instances") or []):
        try:
            records = [LabelRecord(**r) for r in raw.get("records") or []]
            instances.append(Instance(raw["id"], raw["scenario"], raw.get("summary", ""), records,
                                      list(raw.get("expect_rules") or []), dict(raw.get("extra") or {})))
        except (TypeError, KeyError, AttributeError) as exc:
            raise LabelsError(f"{path}: instance {n + 1} is malformed ({exc})") from exc
    return doc.get("parameters") or {}, instances
