"""A bounded cache of computed facts, keyed by a keyed digest of the argument.

Parsing a 2 KB SQL statement takes a millisecond or more; agents send the same statements
again and again. The key is an HMAC-SHA-256 (under a secret key: the record store's when
records are on, else a random one per process) of the parser's declaration and the argument's
JSON text, so the cache holds no argument text and its keys cannot be computed by whoever
does not hold the key. It keeps at most ``max_entries`` facts and ``max_chars`` characters of
their JSON text, dropping the least recently used first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class FactCache:
    """A thread-safe LRU of ``digest -> (fact, its canonical JSON text)``.

    Args:
        max_entries: facts kept at most (0: keep none).
        max_chars: characters of fact text kept at most; a fact larger than this is not kept.
    """

    def __init__(self, *, max_entries: int = 1024, max_chars: int = 8 * 1024 * 1024) -> None:
        if max_entries < 0 or max_chars < 0:
            raise ValueError("cache limits must not be negative")
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._entries: OrderedDict[bytes, tuple[dict[str, Any], str]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """Characters of fact text held now."""
        return self._chars

    def get(self, digest: bytes) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(digest)
            self.hits += 1
            return entry

    def put(self, digest: bytes, fact: dict[str, Any], text: str) -> None:
        if len(text) > self.max_chars or self.max_entries == 0:
            return
        with self._lock:
            old = self._entries.pop(digest, None)
            if old is not None:
                self._chars -= len(old[1])
            self._entries[digest] = (fact, text)
            self._chars += len(text)
            while len(self._entries) > self.max_entries or self._chars > self.max_chars:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._chars -= len(dropped)
