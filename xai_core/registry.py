"""One registry type for every extensible thing (architectures, pre-training sources, attribution
methods, ground-truth and drift metrics), the way ``torchvision.models`` does it.

A :class:`Registry` holds entries by name. An entry is any object with a ``name`` and the
metadata every menu, table and ``--help`` reads (:class:`Entry`): a short ``label``, a ``help``
text and the ``paper`` it comes from; kinds add their own fields (a metric's direction and range,
a method's typed parameters). Modules keep their public ``list_…()`` / ``get_…()`` functions as
thin wrappers and their decorators build the entry from the decorated function::

    METRICS = Registry[MetricSpec]("ground-truth metric")

    def register_metric(name, **meta):
        return METRICS.register(lambda fn: MetricSpec(name=name, fn=fn, **meta))

Registering a name twice raises (a plugin cannot silently replace a built-in); ``get`` of an
unknown name raises :class:`~xai_core.errors.UnknownNameError` naming the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from xai_core.errors import ConfigError, UnknownNameError


class Entry(Protocol):
    """What every registered entry carries (fields or properties)."""

    @property
    def name(self) -> str: ...  # the key: CLI choice, stored in the database

    @property
    def label(self) -> str: ...  # short human name: menus, table headers

    @property
    def help(self) -> str: ...  # one or two sentences: tooltips, --help, report captions

    @property
    def paper(self) -> str: ...  # where it comes from ("" when not from a paper)


class DescribedEntry:
    """:class:`Entry` metadata of an entry that has a ``name`` and a ``description`` (architectures,
    pre-training sources): the label is the name, the help text the description."""

    @property
    def label(self) -> str:
        return self.name  # type: ignore[attr-defined]

    @property
    def help(self) -> str:
        return self.description  # type: ignore[attr-defined]


E = TypeVar("E", bound=Entry)
F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[E]):
    """Named entries of one kind, in registration order (or sorted by name with ``sort=True``)."""

    def __init__(self, kind: str, *, sort: bool = False) -> None:
        self.kind = kind  # "attribution method", "architecture", ...: used in error messages
        self._sort = sort
        self._entries: dict[str, E] = {}

    def add(self, entry: E) -> E:
        """Register ``entry`` under its name; a name already taken raises :class:`ConfigError`."""
        if entry.name in self._entries:
            raise ConfigError(f"{self.kind} {entry.name!r} is already registered; choose another name")
        self._entries[entry.name] = entry
        return entry

    def register(self, build: Callable[[F], E]) -> Callable[[F], F]:
        """A decorator that registers ``build(fn)`` and returns ``fn`` unchanged."""

        def decorator(fn: F) -> F:
            self.add(build(fn))
            return fn

        return decorator

    def unregister(self, name: str) -> E:
        """Remove and return the entry ``name`` (a throw-away registration in a test or a session)."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    @contextmanager
    def swapped(self, entry: E) -> Iterator[E]:
        """Within the block ``entry`` replaces the registered entry of its name (or is added);
        the previous state comes back afterwards, also on errors."""
        previous = self._entries.get(entry.name)
        self._entries[entry.name] = entry
        try:
            yield entry
        finally:
            if previous is None:
                self._entries.pop(entry.name, None)
            else:
                self._entries[entry.name] = previous

    def list(self) -> list[str]:
        """Registered names."""
        return sorted(self._entries) if self._sort else list(self._entries)

    def get(self, name: str) -> E:
        """The entry ``name``; an unknown name raises :class:`UnknownNameError` naming the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.list())}") from None

    def entries(self) -> list[E]:
        """The entries in :meth:`list` order."""
        return [self._entries[name] for name in self.list()]

    def labels(self) -> dict[str, str]:
        """``{name: label}`` in :meth:`list` order (menus' ``format_func``, table headers)."""
        return {e.name: e.label for e in self.entries()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
