"""Per-caller request rate limit: a token bucket per key name, in each worker's memory.

Off unless ``FLUX_DAO_RATE_LIMIT`` is set. Each worker keeps its own buckets, so with ``--workers N`` a caller may
reach up to N times the rate: the limit protects the database from one runaway agent, it is not a billing meter.
"""

import math
import time
from typing import Final

__all__ = ("RateLimiter",)

_MAX_CALLERS: Final = 10_000
"""Buckets kept before idle ones are dropped (callers are keys, or client addresses when the API is open)."""


class RateLimiter:
    """``rate`` requests per second per caller, with bursts of up to ``burst`` requests."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int = 0) -> None:
        if rate <= 0:
            msg = "the rate must be positive"
            raise ValueError(msg)
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)

    def retry_after(self, caller: str) -> int | None:
        """Take one token for ``caller``: None if the request may go, else whole seconds until it could."""
        now = time.monotonic()
        tokens, at = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= _MAX_CALLERS and caller not in self._buckets:
                self._forget_full_buckets(now)
            self._buckets[caller] = (tokens - 1.0, now)
            return None
        self._buckets[caller] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _forget_full_buckets(self, now: float) -> None:
        """Drop callers whose bucket has refilled: forgetting them changes nothing."""
        self._buckets = {
            caller: (tokens, at)
            for caller, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate < self.burst
        }
