"""What became of a submission."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"  # accepted (from any door), waiting for a scoring job to claim it
    SCORING = "scoring"  # claimed under a lease: a job is scoring it (a worker, or the CLI)
    PENDING = "pending"  # old rows only (the CLI scored outside the queue): claimed as queued
    SCORED = "scored"
    INVALID = "invalid"  # the validator's message says why; not counted
    FAILED = "failed"  # a scorer error or an interrupted scoring; retryable, not counted
    DUPLICATE = "duplicate"  # the same file as an earlier scored one of the team


# What uses up a slot of the daily limit.
COUNTED = (Status.QUEUED, Status.SCORING, Status.PENDING, Status.SCORED)
# Not final yet: a participant's pages keep polling while one of these is shown.
WAITING = (Status.QUEUED, Status.SCORING, Status.PENDING)
