"""A bounded cache of unwrapped data keys, like the AWS Encryption SDK's caching materials manager.

Only *decrypt* results are cached: each version gets a fresh data key (never reused), while
reading a version again skips the key provider. Entries expire by age and by number of uses,
and the cache holds at most ``max_entries`` keys.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from chalicelib.ports import DataKey, KeyProvider


class _Entry:
    __slots__ = ("created", "key", "uses")

    def __init__(self, key: bytes, created: float) -> None:
        self.key = key
        self.created = created
        self.uses = 0


class CachingKeyring:
    """Puts a bounded, time-limited cache in front of a key provider's unwrap.

    Example::

        keys = CachingKeyring(KmsKeyProvider(kms, "alias/v-secure-data"), ttl=300)
    """

    def __init__(self, inner: KeyProvider, *, ttl: float = 300, max_entries: int = 1000,
                 max_uses: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.name = inner.name
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_uses = max_uses
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def generate_data_key(self, context: Mapping[str, str]) -> DataKey:
        return self.inner.generate_data_key(context)

    def decrypt_data_key(self, wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
        cache_key = _cache_key(wrapped, kid, context)
        key = self._lookup(cache_key)
        if key is not None:
            return key
        key = self.inner.decrypt_data_key(wrapped, kid, context)
        self._remember(cache_key, key)
        return key

    def check_health(self) -> None:
        self.inner.check_health()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, cache_key: bytes) -> bytes | None:
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is None or self._expired(entry):
                self._entries.pop(cache_key, None)
                self.misses += 1
                return None
            entry.uses += 1
            self._entries.move_to_end(cache_key)
            self.hits += 1
            return entry.key

    def _remember(self, cache_key: bytes, key: bytes) -> None:
        with self._lock:
            self._entries[cache_key] = _Entry(key, self._clock())
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def _expired(self, entry: _Entry) -> bool:
        return self._clock() - entry.created > self._ttl or entry.uses >= self._max_uses


def _cache_key(wrapped: bytes, kid: str, context: Mapping[str, str]) -> bytes:
    digest = hashlib.sha256()
    for part in (kid.encode(), wrapped, *(f"{k}={v}".encode() for k, v in sorted(context.items()))):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()
