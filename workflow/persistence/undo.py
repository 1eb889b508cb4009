"""An undo log for the store's in-memory state: a refused command's changes are rolled
back in memory, which is what a savepoint per command gave, without the round trips."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

_MISSING = object()


class UndoLog:
    """Records how to reverse each change made between :meth:`begin` and :meth:`commit`."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], None]] | None = None

    @property
    def changed(self) -> bool:
        """Whether the command under way has changed anything yet."""
        return bool(self._steps)

    def begin(self) -> None:
        self._steps = []

    def undo(self) -> None:
        assert self._steps is not None
        for step in reversed(self._steps):
            step()
        self._steps = None

    def commit(self) -> None:
        self._steps = None

    def assign(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        if self._steps is not None:
            old = mapping.get(key, _MISSING)
            if old is _MISSING:
                self._steps.append(lambda: mapping.pop(key, None))
            else:
                self._steps.append(lambda: mapping.__setitem__(key, old))
        mapping[key] = value

    def include(self, items: set[Any], item: Any) -> None:
        if item not in items:
            items.add(item)
            if self._steps is not None:
                self._steps.append(lambda: items.discard(item))

    def append(self, items: list[Any], item: Any) -> None:
        items.append(item)
        if self._steps is not None:
            self._steps.append(items.pop)
