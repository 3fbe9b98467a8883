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


class Extractor:
    """The same values as :func:`flatten`, for a fixed list of columns only.

    Rules read a few dozen fields of a few percent of the records; flattening every field of
    every candidate cost four times more than reading just those (measured with ``make bench``),
    so each column gets a small getter, and each Name/Value list is indexed once per record.
    """

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self._lists = sorted({c.partition(".")[0] for c in self.columns
                              if c.partition(".")[0] in (*_NAME_VALUE_LISTS, "ModifiedProperties")
                              and c.partition(".")[2]})
        self._getters = [self._getter(c) for c in self.columns]

    def _getter(self, column: str):  # noqa: ANN202
        head, _, rest = column.partition(".")
        if rest and head in _NAME_VALUE_LISTS:
            return lambda record, lists: lists[head].get(rest, "")
        if rest and head == "ModifiedProperties" and rest.endswith((".NewValue", ".OldValue")):
            key = tuple(rest.rsplit(".", 1))
            return lambda record, lists: lists[head].get(key, "")
        if rest:
            parts = column.split(".")

            def nested(record, lists):  # noqa: ANN001, ANN202
                v = record
                for part in parts:
                    v = v.get(part) if v.__class__ is dict else None
                return v if v.__class__ is str else ("" if v.__class__ is dict else _text(v))
            return nested

        def top(record, lists):  # noqa: ANN001, ANN202
            v = record.get(column)
            return v if v.__class__ is str else ("" if v.__class__ is dict else _text(v))
        return top

    def _index(self, key: str, value: Any) -> dict[Any, str]:
        d: dict[Any, str] = {}
        if value.__class__ is not list:
            return d
        mp = key == "ModifiedProperties"
        for item in value:
            if item.__class__ is not dict or "Name" not in item:
                continue
            name = str(item["Name"])
            if mp:
                d[(name, "NewValue")] = _text(item.get("NewValue"))
                d[(name, "OldValue")] = _text(item.get("OldValue"))
            else:
                val = item.get("Value")
                val = val if val.__class__ is str else _text(val)
                d[name] = f"{d[name]}, {val}" if name in d else val
        return d

    def row(self, record: dict[str, Any]) -> list[str]:
        lists = {key: self._index(key, record.get(key)) for key in self._lists}
        return [get(record, lists) for get in self._getters]
