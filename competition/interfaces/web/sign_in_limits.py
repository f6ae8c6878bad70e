"""Sign-in attempts, limited in sliding windows (issue 33): guessing tokens costs time.

Two counts, each over the last `sign_in_window_seconds` (competition.yaml's `portal:`
settings, read at each attempt):
- failed sign-ins per client address (`sign_in_failures_per_address`). Successful ones never
  count, so a whole class behind one address signs in; one member of it guessing tokens shuts
  that address out for at most a window;
- attempts per token prefix, the first PREFIX_CHARS characters of the token tried
  (`sign_in_attempts_per_token_prefix`): every form sign-in, and every bearer token the API
  does not know. Guesses at a token whose beginning leaked cannot be spread over addresses.
A token counts once per window in each count: trying the same token again is no new guess, so
a script polling the API with a replaced token, or a team signing in on several machines, does
not use up a limit that is there against guessing.
An attempt over either limit is answered 429 with `Retry-After` and its token is not looked at
(nor counted): a refusal takes the same time whether the token was right or not.

The counts live in this process's memory (a restart forgets them), and at most MAX_KEYS
addresses and MAX_KEYS prefixes are tracked: past that, the longest unchanged is forgotten.
Failures are counted after the token was checked, so concurrent attempts of one address can
pass its limit by as many as are in flight at once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from competition.configs import PortalConfig

log = logging.getLogger(__name__)
PREFIX_CHARS = 8
MAX_KEYS = 10_000


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # whole seconds until the attempt would be counted again
    reason: str

    @property
    def message(self) -> str:
        return f"{self.reason}: try again in {self.retry_after} s"


def client_address(request: Request, trust_proxy: bool) -> str:
    """Where the attempt comes from: the connection's peer, or behind a trusted proxy the
    address that proxy saw (the last of `X-Forwarded-For`: the proxy appends its peer, and
    any earlier entry is whatever the client wrote)."""
    forwarded = request.headers.get("x-forwarded-for", "") if trust_proxy else ""
    last = forwarded.split(",")[-1].strip()
    if last:
        return last[:100]
    return request.client.host if request.client is not None else "unknown"


def _digest(token: str) -> str:
    # Which token an event was, without keeping the token (a short one-way digest).
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class _Windows:
    """Per key, the (time, token digest) of each event within a window, one per token; for
    at most `max_keys` keys."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.events: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()

    def count(self, key: str, now: float, window: float) -> deque[tuple[float, str]]:
        """The key's events still inside the window (older ones dropped)."""
        events = self.events.get(key)
        if events is None:
            return deque()
        while events and events[0][0] <= now - window:
            events.popleft()
        if not events:
            del self.events[key]
        return events

    def add(self, key: str, now: float, token: str) -> int | None:
        """Count the token's event; the key's new count, or None if the token was already
        counted within the window."""
        digest = _digest(token)
        events = self.events.setdefault(key, deque())
        if any(seen == digest for _, seen in events):
            return None
        events.append((now, digest))
        self.events.move_to_end(key)
        while len(self.events) > self.max_keys:
            self.events.popitem(last=False)
        return len(events)


class SignInLimits:
    """Thread-safe counts of sign-in attempts (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = _Windows(max_keys)  # by client address
        self._attempts = _Windows(max_keys)  # by token prefix

    def admit(self, address: str, token: str, rules: PortalConfig,
              attempt: bool = True) -> Refusal | None:
        """None if a sign-in with `token` from `address` may be checked now (counted against
        the token's prefix with `attempt`: the login form); else why not and for how long."""
        window = rules.sign_in_window_seconds
        prefix = token[:PREFIX_CHARS]
        with self._lock:
            now = self.clock()
            failures = self._failures.count(address, now, window)
            attempts = self._attempts.count(prefix, now, window)
            waits = []
            if len(failures) >= rules.sign_in_failures_per_address:
                waits.append((failures[-rules.sign_in_failures_per_address][0], "too many "
                              f"failed sign-ins from your address in {window} s"))
            if len(attempts) >= rules.sign_in_attempts_per_token_prefix:
                waits.append((attempts[-rules.sign_in_attempts_per_token_prefix][0], "too many "
                              f"sign-in attempts with tokens beginning like this one in "
                              f"{window} s"))
            if waits:
                oldest, reason = max(waits)
                return Refusal(max(1, math.ceil(oldest + window - now)), reason)
            if attempt:
                self._note(self._attempts, prefix, now, token,
                           rules.sign_in_attempts_per_token_prefix, "token prefix")
        return None

    def failed(self, address: str, token: str, rules: PortalConfig,
               attempt: bool = False) -> None:
        """A sign-in from `address` with `token` failed: count it against the address (and,
        with `attempt`, against the token's prefix: a bearer token the API did not know)."""
        with self._lock:
            now = self.clock()
            self._note(self._failures, address, now, token,
                       rules.sign_in_failures_per_address, f"address {address}")
            if attempt:
                self._note(self._attempts, token[:PREFIX_CHARS], now, token,
                           rules.sign_in_attempts_per_token_prefix, "token prefix")

    @staticmethod
    def _note(windows: _Windows, key: str, now: float, token: str, limit: int,
              what: str) -> None:
        if windows.add(key, now, token) == limit:  # logged once per lockout, not per refusal
            log.warning("sign-in: the limit of %d attempts for one %s is reached; further "
                        "attempts are refused until the window passes", limit, what)
