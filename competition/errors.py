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
    the message names the file, the key and, for a misspelt key, the closest valid one."""
