"""A tiny name -> factory registry, as in fast-reid, without global mutable config."""

from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, TypeVar

from ccreid.errors import CCReIDError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; ``@REG.register("name")`` adds one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise CCReIDError(f"unknown {self.kind} {name!r}; choose one of: {known}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
