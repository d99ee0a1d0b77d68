"""Importing a library without an optional module it would load only because it is installed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(name: str) -> Iterator[None]:
    """While inside, ``import name`` raises ImportError (unless the process loaded it already, which
    then stays as it is); afterwards it imports as usual."""
    hide = name not in sys.modules
    if hide:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if hide and sys.modules.get(name, False) is None:
            del sys.modules[name]
