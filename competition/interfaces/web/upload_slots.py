"""Uploads being received at once: a slot per upload, counted per team and in all, and the
temporary space they fill, checked before a byte of a body is read and given back when the
upload ends, whatever happens (issue 33).

One registry per serve process (each process has its own temporary folder). Space is counted
as bytes arrive (`Reservation.grow`), never from what a request declares: a client that
declares a large body and then sends nothing holds no space (only its slot, until the
upload's idle timeout ends it), and one that declares a small length and sends more is cut
off by the guard. Before the body, an upload must fit in the space free now: its declared
`Content-Length` capped at one upload's cap, or the cap itself when chunked.

Refusals, in this order:
- the team already has its `uploads_in_flight_per_team`: 429 (the team's own doing);
- the portal already receives `uploads_in_flight` in all: 503 (the server is busy, not the
  team at fault: clients and proxies treat it as "try again shortly");
- the upload would not fit in the temporary space in all, before its body or as it grows:
  507 Insufficient Storage.
Each refusal carries a Retry-After: slots and space free up as soon as uploads end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from competition.configs import PortalConfig
from competition.interfaces.web.uploads import UploadRefused

log = logging.getLogger(__name__)
MB = 1024 * 1024
# Uploads end within seconds to minutes; a client told to wait this long retries soon enough.
RETRY_AFTER_S = 5
# With no `upload_space_mb`: this many uploads at the cap fit in the temporary space.
DEFAULT_UPLOADS_OF_SPACE = 8


@dataclass(frozen=True)
class SlotLimits:
    """The caps in force for one request (competition.yaml may change between requests)."""

    per_team: int
    in_all: int
    space_bytes: int
    upload_cap: int  # one upload's body: the file's size limit with the form's overhead

    @classmethod
    def of(cls, config: PortalConfig, upload_cap: int) -> SlotLimits:
        space = DEFAULT_UPLOADS_OF_SPACE * upload_cap if config.upload_space_mb is None \
            else int(config.upload_space_mb * MB)
        return cls(config.uploads_in_flight_per_team, config.uploads_in_flight, space,
                   upload_cap)

    def wanted_bytes(self, declared: int | None) -> int:
        """The space an upload reserves: its declared length (a longer one is refused by the
        guard at its first byte), else the cap."""
        return self.upload_cap if declared is None else min(max(declared, 0), self.upload_cap)


class UploadSlots:
    """The uploads in flight, per team and in all, and the bytes they have reserved.

    Thread-safe (a lock around a few counters, never held across I/O), so it serves the
    event loop and worker threads alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_team: Counter[str] = Counter()
        self._count = 0
        self._bytes = 0

    @property
    def in_flight(self) -> int:
        return self._count

    @property
    def reserved_bytes(self) -> int:
        return self._bytes

    def of_team(self, team: str) -> int:
        return self._per_team[team]

    @contextlib.contextmanager
    def reserved(self, team: str, declared: int | None,
                 limits: SlotLimits) -> Iterator[Reservation]:
        """A slot for one upload of `team`, whose space grows with its body (`grow`), or an
        UploadRefused (429, 503, 507) saying which cap is reached."""
        self._take(team, limits.wanted_bytes(declared), limits)
        reservation = Reservation(self, limits)
        try:
            yield reservation
        finally:
            self._give(team, reservation.bytes)

    def _take(self, team: str, wanted: int, limits: SlotLimits) -> None:
        with self._lock:
            held = self._per_team[team]
            if held >= limits.per_team:
                raise _refused(429, f"team {team!r} already has {held} uploads in progress "
                                    f"(at most {limits.per_team} at once): wait for one to "
                                    "finish")
            if self._count >= limits.in_all:
                raise _refused(503, f"the portal is receiving {self._count} uploads at once, "
                                    "its limit: try again in a few seconds")
            self._check_space(wanted, limits)
            self._per_team[team] += 1
            self._count += 1

    def _check_space(self, wanted: int, limits: SlotLimits) -> None:
        """Under the lock: `wanted` more bytes fit in the temporary space, or a 507."""
        if self._bytes + wanted > limits.space_bytes:
            raise _refused(507, f"the portal's temporary space for uploads is taken "
                                f"({self._bytes / MB:.1f} of {limits.space_bytes / MB:.1f} MB "
                                f"in use; this upload needs {wanted / MB:.1f} MB more): try "
                                "again when other uploads have finished")

    def _grow(self, n: int, limits: SlotLimits) -> None:
        with self._lock:
            self._check_space(n, limits)
            self._bytes += n

    def _give(self, team: str, used: int) -> None:
        with self._lock:
            self._per_team[team] -= 1
            if self._per_team[team] <= 0:
                del self._per_team[team]  # no counter left behind per team ever seen
            self._count -= 1
            self._bytes -= used


class Reservation:
    """One upload's slot and the temporary space its body has taken so far."""

    def __init__(self, slots: UploadSlots, limits: SlotLimits):
        self.slots, self.limits, self.bytes = slots, limits, 0

    def grow(self, n: int) -> None:
        """`n` more bytes of the body arrived: counted, or a 507 if the space is taken."""
        self.slots._grow(n, self.limits)
        self.bytes += n


def _refused(status: int, detail: str) -> UploadRefused:
    log.info("upload refused (%d): %s", status, detail)
    return UploadRefused(status, detail, headers={"Retry-After": str(RETRY_AFTER_S)})
