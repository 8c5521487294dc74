"""The commands of ``git hangar``, each imported from its module only when used.

``git hangar status`` imports the module of ``status`` and no other command
module; ``git hangar --version`` imports none. Whatever lists every command
(``-h``, ``help``, the manual page, shell completion, the docs) reads them
all, in the order they were declared. :class:`LazyCommands` is the mapping a
click group keeps its commands in (``group.commands``): its names are known
at once, a command is imported on its first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping

import click


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each imported on first lookup.

    Parameters
    ----------
    package : str
        The package the modules are in (``"hangar_git.cli"``).
    where : Mapping[str, str]
        Command name -> ``"module:attribute"`` of its click command, in the
        order the commands are listed.
    prepare : Callable[[click.Command], None]
        Called with each command when it is imported, before it is used (the
        group's ``add_command``, which adds ``-q`` and stores it here).
    """

    def __init__(
        self, package: str, where: Mapping[str, str], prepare: Callable[[click.Command], None]
    ) -> None:
        self._package = package
        self._entries: dict[str, click.Command | str] = dict(where)
        self._prepare = prepare

    def __getitem__(self, name: str) -> click.Command:
        entry = self._entries[name]
        if isinstance(entry, click.Command):
            return entry
        module, _, attr = entry.partition(":")
        cmd = getattr(importlib.import_module(f".{module}", self._package), attr)
        if not isinstance(cmd, click.Command) or cmd.name != name:
            raise TypeError(f"{self._package}.{entry} is not the click command {name!r}")
        self._prepare(cmd)
        self._entries[name] = cmd  # (prepare usually stored it already)
        return cmd

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self._entries[name] = cmd  # a declared name keeps its place

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def imported(self) -> list[str]:
        """The names whose command was imported (or added) already.

        Returns
        -------
        list of str
            In listing order.
        """
        return [n for n, e in self._entries.items() if isinstance(e, click.Command)]


__all__ = ["LazyCommands"]
