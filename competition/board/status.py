"""What became of a submission."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # being scored
    SCORED = "scored"
    INVALID = "invalid"  # the validator's message says why; not counted
    FAILED = "failed"  # a scorer error or an interrupted scoring; retryable, not counted
    DUPLICATE = "duplicate"  # the same file as an earlier scored one of the team


# What uses up a slot of the daily limit.
COUNTED = (Status.PENDING, Status.SCORED)
