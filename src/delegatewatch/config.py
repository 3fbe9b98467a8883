"""The one configuration file (TOML): tunables users set for their organisation.

Every section has sensible defaults, so no file is needed. Sections are added by the features that
read them; each is a frozen dataclass here, documented in ``docs/configuration.md``::

    [google]
    # Reports API event names to treat as "a Gmail delegate was added" (none is documented by Google)
    delegate_added_events = ["ADD_DELEGATE"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class GoogleConfig:
    delegate_added_events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    google: GoogleConfig = field(default_factory=GoogleConfig)


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"[{name}]: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def load(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    sections = {f.name: f.type for f in fields(Config)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    kwargs = {}
    for f in fields(Config):
        if f.name in data:
            cls = type(getattr(Config(), f.name))
            kwargs[f.name] = _section(cls, data[f.name], f.name)
    return Config(**kwargs)


_current = Config()


def current() -> Config:
    """The configuration of this run (set by the CLI with :func:`use`)."""
    return _current


def use(config: Config) -> None:
    global _current
    _current = config
