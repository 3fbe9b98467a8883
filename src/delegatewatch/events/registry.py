"""Which mapper turns a family's records into typed events."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from delegatewatch.events.model import Event
from delegatewatch.events.principals import Resolver
from delegatewatch.records import Record


class Mapper(Protocol):
    def events(self, record: Record) -> list[Event]: ...


class _NoEvents:
    """A family without a mapper yet: findings are still reported, from the rule and the record."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def events(self, record: Record) -> list[Event]:
        return []


def mapper_for(family: str, resolver: Resolver) -> Any:
    """One resolver is shared by all families, so a person named by a UPN in one log and a DN or
    ``DOMAIN\\sam`` in another is one principal."""
    if family == "m365":
        from delegatewatch.events.ual import UalMapper

        return UalMapper(resolver)
    try:
        module = importlib.import_module(f"delegatewatch.events.families.{family}")
    except ModuleNotFoundError:
        return _NoEvents(resolver)
    return module.Mapper(resolver)
