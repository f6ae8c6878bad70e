"""Errors that reach a user as a clear message and exit code 2, never as a traceback."""

from __future__ import annotations


class CompetitionError(Exception):
    """Base class: the message is complete and safe to show to a participant."""

    exit_code = 2


class SubmissionError(CompetitionError):
    """A submission file breaks a format rule.

    The message names the file, where in it (line, ImageId, slice, specimen) and the rule broken.
    It never contains hidden labels: validators only see public facts (ids and shapes).
    """

    def __init__(self, rule: str, *, file: str | None = None, where: str | None = None):
        self.rule, self.file, self.where = rule, file, where
        parts = [p for p in (file, where) if p]
        super().__init__(": ".join([*parts, rule]) if parts else rule)

    def located(self, file: str) -> SubmissionError:
        """The same error with the file name filled in (readers are pure and do not know it)."""
        return SubmissionError(self.rule, file=file, where=self.where)


class SourceDataError(CompetitionError):
    """Data given to `prepare` is missing or malformed."""


class CompetitionDirError(CompetitionError):
    """A directory is not a prepared competition, or is damaged."""


class ConfigError(CompetitionError):
    """A configuration file (competition.yaml, an entry's config, mlflow.yaml) is malformed:
    the message names the file, the key and, for a misspelt key, the closest valid one.
    `problems`: the same, one message per key (dotted, e.g. "rules.daily_limit"), where the
    model's validation found them."""

    problems: dict[str, str] = {}  # noqa: RUF012 (replaced per instance, never mutated)


class StoreVersionError(CompetitionError):
    """The submission store's schema is not the revision this code needs: the message names
    the store's revision, the one needed and the command that migrates it."""


MAX_ERROR_CHARS = 500  # of one error, as a participant sees it (the organizers' log has it all)


def clipped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text`, or its start and a marker saying it was cut, in at most `limit` characters
    (any limit longer than the marker): a message about a hostile file may list thousands
    of its names.

    >>> clipped("short")
    'short'
    >>> cut = clipped("x" * 1000, 60)
    >>> len(cut), cut[-34:]
    (60, 'x … (cut; 1,000 characters in all)')
    """
    if len(text) <= limit:
        return text
    marker = f" … (cut; {len(text):,} characters in all)"
    return text[: max(limit - len(marker), 0)] + marker
