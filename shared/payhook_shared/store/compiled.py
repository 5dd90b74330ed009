"""Statements compiled once for the hot paths, which run them on the driver connection (``Store.driver``).

SQLAlchemy's execution layer costs more client CPU than a one-row statement
itself; a ``Compiled`` keeps what that layer would do per call — the SQL, and
each parameter's and result column's type conversion — worked out once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Compiled:
    """A Core statement compiled for ``dialect``: its SQL, and its parameters' and columns' conversions.

    ``shapes`` splits a result row into objects: one ``(factory, column names)``
    per group of consecutive selected columns, called with those columns as
    keyword arguments.
    """

    def __init__(self, statement: Any, dialect: Any, shapes: Sequence[tuple[type, Sequence[str]]] = ()):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in compiled.binds.items()}
        # Values written into the statement (a state name, the 1 of ``attempts + 1``) bind the same every time.
        self._fixed = {name: processors[name](bind.effective_value) if processors[name] else bind.effective_value
                       for name, bind in compiled.binds.items() if not bind.required}
        self._binds = [(name, processors[name]) for name, bind in compiled.binds.items() if bind.required]
        self._results = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                         for c in statement.selected_columns] if shapes else []
        self._shapes = [(factory, list(keys)) for factory, keys in shapes]
        if sum(len(keys) for _, keys in self._shapes) != len(self._results):
            raise ValueError("shapes must name every selected column")

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every parameter of the statement, from ``values``, converted as SQLAlchemy would bind them."""
        params = dict(self._fixed)
        params.update((name, process(values[name]) if process else values[name]) for name, process in self._binds)
        return params

    def objects(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """One result row as one object per shape, its values converted as SQLAlchemy would read them."""
        values = [process(v) if process else v for v, process in zip(row, self._results)]
        objects, start = [], 0
        for factory, keys in self._shapes:
            objects.append(factory(**dict(zip(keys, values[start:start + len(keys)]))))
            start += len(keys)
        return tuple(objects)
