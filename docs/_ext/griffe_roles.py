"""Griffe extension for the docs build: Sphinx roles in docstrings become code.

The package's numpydoc docstrings use roles such as ``:class:`Arraysets``` and
``:meth:`close```; mkdocstrings renders Markdown, where those would show up as
raw text. This turns each role into inline code (``Arraysets``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|obj|exc|data|const):`~?([^`]+)`")


class SphinxRolesToCode(griffe.Extension):
    """Rewrite ``:role:`target``` as ```target``` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
