"""Event mappers for source families beyond the unified audit log: a module ``<family>.py`` here
defines ``class Mapper`` with ``__init__(self, resolver)`` and ``events(record) -> list[Event]``
(optionally ``observe(data)``); ``delegatewatch.events.registry`` finds it by the family name."""
