"""One instance per process, built on first use: the shared services behind every request.

Lambda keeps a process warm between invocations, so the services (audit writer, vault,
directory, ...) are built once and reused. ``reset`` drops the instance, for tests and for
the local stack when it points the process at another endpoint.

Example::

    _writer = ProcessSingleton(lambda: AuditWriter(client("dynamodb"), get_settings().audit_table))

    def get_audit_writer() -> AuditWriter:
        return _writer.get()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessSingleton(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._instance: T | None = None
        self._lock = threading.RLock()  # a builder may build other singletons first

    def get(self) -> T:
        instance = self._instance
        if instance is None:
            with self._lock:
                if self._instance is None:
                    self._instance = self._build()
                instance = self._instance
        return instance

    def set(self, instance: T | None) -> None:
        """Use ``instance`` (``None``: build afresh on next use)."""
        with self._lock:
            self._instance = instance

    def reset(self) -> None:
        self.set(None)
