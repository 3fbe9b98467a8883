"""The flat, vendor-named view of a UAL record that Sigma rules are written against.

Nested objects become dotted names (``Item.ParentFolder.MemberRights``, as Splunk and
Sentinel name them), and the Name/Value lists become one field per name
(``Parameters.AccessRights``, as Elastic's ``o365.audit.Parameters.*`` does):
``Parameters``, ``OperationProperties``, ``ExtendedProperties``; ``ModifiedProperties`` gives
``ModifiedProperties.<Name>.NewValue`` / ``.OldValue``. Every value is text: booleans as
``True``/``False``, numbers in decimal, other lists as compact JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

_NAME_VALUE_LISTS = ("Parameters", "OperationProperties", "ExtendedProperties")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()


def flatten(record: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    _walk(record, "", out)
    return out


def _walk(obj: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict):
            _walk(value, name + ".", out)
        elif isinstance(value, list) and key in _NAME_VALUE_LISTS and not prefix:
            out[name] = _text(value)
            for item in value:
                if isinstance(item, dict) and "Name" in item:
                    sub = f"{name}.{item['Name']}"
                    # A name given twice keeps both values (rare, but never lose one).
                    val = _text(item.get("Value"))
                    out[sub] = f"{out[sub]}, {val}" if sub in out else val
        elif isinstance(value, list) and key == "ModifiedProperties" and not prefix:
            out[name] = _text(value)
            for item in value:
                if isinstance(item, dict) and "Name" in item:
                    out[f"{name}.{item['Name']}.NewValue"] = _text(item.get("NewValue"))
                    out[f"{name}.{item['Name']}.OldValue"] = _text(item.get("OldValue"))
        else:
            out[name] = _text(value)


def parameters(record: dict[str, Any]) -> dict[str, str]:
    """``Parameters`` as a case-insensitive-keyed dict (keys lower-cased)."""
    params = record.get("Parameters")
    out: dict[str, str] = {}
    if isinstance(params, list):
        for item in params:
            if isinstance(item, dict) and "Name" in item:
                out[str(item["Name"]).lower()] = _text(item.get("Value"))
    return out
