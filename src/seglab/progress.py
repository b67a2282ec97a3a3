"""Driving progress generators: the core's long operations yield events and return a result."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any


def run_to_end(gen: Generator[Any, None, Any], on_event: Callable[[Any], Any] | None = None) -> Any:
    """Exhaust a progress generator and return its result; ``on_event`` sees each event."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
