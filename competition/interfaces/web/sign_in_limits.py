"""Sign-in attempts with unknown tokens, limited in sliding windows (issue 33): guessing
tokens costs time, and nobody can lock anybody else out.

A token is looked up first: a known one always signs in (a hash lookup costs the same for
every token). Only a token the portal does not know is judged, against two counts, each over
the last `sign_in_window_seconds` (competition.yaml's `portal:` settings, read at each
attempt):
- failed sign-ins per client address (`sign_in_failures_per_address`): one member of a class
  behind one address guessing tokens shuts that address's guesses out, never its students'
  real tokens;
- failed sign-ins per token prefix, the first PREFIX_CHARS characters of the token tried
  (`sign_in_attempts_per_token_prefix`): guesses at a token whose beginning leaked cannot be
  spread over addresses, and the token's owner still signs in.
Both the login form and bearer tokens the API does not know count. A token counts once per
window in each count: trying the same wrong token again is no new guess (a script polling
with a replaced token uses up nothing). An unknown token over either limit is answered 429
with `Retry-After` instead of 401, and is not counted again.

The counts live in this process's memory (a restart forgets them), and at most MAX_KEYS
addresses and MAX_KEYS prefixes are tracked: past that, the longest unchanged is forgotten.
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


def client_address(request: Request, *, trust_proxy: bool) -> str:
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
        # In a course: the strictest limits of its competitions (course_state.Course), which
        # every competition's own sign-in keeps to as well: a student's token is valid in all
        # of them, so guesses at the most lenient one would find tokens for the others.
        self.strictest: Callable[[], PortalConfig] | None = None
        self._lock = threading.Lock()
        self._failures = _Windows(max_keys)  # by client address
        self._attempts = _Windows(max_keys)  # by token prefix

    def refused(self, address: str, token: str, rules: PortalConfig) -> Refusal | None:
        """An unknown `token` was tried from `address`: why it is answered 429 and for how
        long, when a limit was already reached; else None, and the failure is counted."""
        rules = self._rules(rules)
        with self._lock:
            now = self.clock()
            refusal = self._refusal(address, token, rules, now)
            if refusal is not None:
                return refusal
            self._note(self._failures, address, now, token,
                       rules.sign_in_failures_per_address, f"address {address}")
            self._note(self._attempts, token[:PREFIX_CHARS], now, token,
                       rules.sign_in_attempts_per_token_prefix, "token prefix")
        return None

    def blocked(self, address: str, token: str, rules: PortalConfig) -> Refusal | None:
        """Why an attempt would be refused now (a limit already reached), counting nothing:
        for guesses that are refused before they are tried (invitation codes)."""
        rules = self._rules(rules)
        with self._lock:
            return self._refusal(address, token, rules, self.clock())

    def _rules(self, rules: PortalConfig) -> PortalConfig:
        if self.strictest is None:
            return rules
        floor = self.strictest()
        return rules.model_copy(update={
            "sign_in_window_seconds": max(rules.sign_in_window_seconds,
                                          floor.sign_in_window_seconds),
            "sign_in_failures_per_address": min(rules.sign_in_failures_per_address,
                                                floor.sign_in_failures_per_address),
            "sign_in_attempts_per_token_prefix": min(
                rules.sign_in_attempts_per_token_prefix,
                floor.sign_in_attempts_per_token_prefix)})

    def _refusal(self, address: str, token: str, rules: PortalConfig,
                 now: float) -> Refusal | None:
        window = rules.sign_in_window_seconds
        failures = self._failures.count(address, now, window)
        attempts = self._attempts.count(token[:PREFIX_CHARS], now, window)
        waits = []
        if len(failures) >= rules.sign_in_failures_per_address:
            waits.append((failures[-rules.sign_in_failures_per_address][0], "too many "
                          f"failed sign-ins from your address in {window} s"))
        if len(attempts) >= rules.sign_in_attempts_per_token_prefix:
            waits.append((attempts[-rules.sign_in_attempts_per_token_prefix][0], "too many "
                          f"failed sign-ins with tokens beginning like this one in "
                          f"{window} s"))
        if not waits:
            return None
        oldest, reason = max(waits)
        return Refusal(max(1, math.ceil(oldest + window - now)), reason)

    @staticmethod
    def _note(windows: _Windows, key: str, now: float, token: str, limit: int,
              what: str) -> None:
        if windows.add(key, now, token) == limit:  # logged once per lockout, not per refusal
            log.warning("sign-in: the limit of %d attempts for one %s is reached; further "
                        "attempts are refused until the window passes", limit, what)
