"""A prepared competition, addressed by its directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from competition.errors import CompetitionDirError, ConfigError, SubmissionError
from competition.formats.files import Limits, SubmissionFile

if TYPE_CHECKING:
    from competition.configs import CompetitionConfig, RulesConfig
    from competition.tasks.base import AnyTask
    from competition.tracking.config import CompetitionKey


@dataclass
class PreparedCompetition:
    root: Path
    config: CompetitionConfig

    @classmethod
    def open(cls, root: Path | str, *, public_only: bool = False) -> PreparedCompetition:
        """The competition at `root`; `public_only`: what a participant has (its
        configuration and public/), nothing under private/ is looked at."""
        from competition import configs
        from competition.tasks import get_task

        root = Path(root)
        config_path = root / "competition.yaml"
        if not config_path.is_file():
            raise CompetitionDirError(
                f"{root}: not a prepared competition (no competition.yaml); "
                "create one with `competition prepare`")
        try:
            config = configs.load(configs.CompetitionConfig, config_path)
        except ConfigError as e:
            raise CompetitionDirError(str(e)) from None
        task = get_task(config.task)  # an unknown task is a clear error now, not at first use
        # Only the task knows its score's direction, which the grade thresholds must follow.
        problem = config.grading and config.grading.direction_problem(
            task.direction.higher_is_better)
        if problem:
            raise CompetitionDirError(f"{config_path}: {problem}")
        comp = cls(root, config)
        if not public_only and not comp.solution_path.is_file():
            raise CompetitionDirError(f"{root}: the solution {comp.solution_path} is missing")
        return comp

    @property
    def name(self) -> str:
        return self.config.name or self.root.name

    @property
    def key(self) -> CompetitionKey:
        """What MLflow knows the competition by: its id (None if prepared before ids), its
        name for display."""
        from competition.tracking.config import CompetitionKey

        return CompetitionKey(self.config.id, self.name, str(self.root))

    def give_id(self) -> str | None:
        """Give a competition prepared before ids its id, once (None: it has one)."""
        from competition import configs

        new = configs.give_id(self.root / "competition.yaml")
        if new is not None:
            self.config = self.config.model_copy(update={"id": new})
        return new

    @property
    def title(self) -> str:
        return self.config.title or self.name

    @property
    def task(self) -> AnyTask:
        from competition.tasks import get_task

        return get_task(self.config.task)

    @property
    def rules(self) -> RulesConfig:
        return self.config.rules

    @property
    def max_submission_bytes(self) -> int:
        return int(self.config.rules.max_submission_mb * 1024 * 1024)

    @property
    def limits(self) -> Limits:
        """The task's limits on reading a submission, with this competition's upload size."""
        return self.task.limits.with_max_bytes(self.max_submission_bytes)

    def submission(self, path: Path, name: str | None = None) -> SubmissionFile:
        """A submission file of this competition, opened lazily within its limits."""
        return SubmissionFile(path, self.limits, name)

    @property
    def takes_code(self) -> bool:
        """Whether participants may upload code (a zip of an entry folder; issue 32)."""
        return self.config.submission in ("code", "both")

    @property
    def takes_files(self) -> bool:
        """Whether participants may upload prediction files."""
        return self.config.submission in ("files", "both")

    def test_inputs(self) -> dict[str, Path]:
        """The test inputs by their path under public/, where they are: private/inputs/ in
        a code competition (never published), public/ otherwise."""
        found = {}
        for rel in self.task.test_inputs:
            hidden = self.root / "private" / "inputs" / rel
            found[rel] = hidden if hidden.exists() else self.public_dir / rel
        return found

    @property
    def solution_path(self) -> Path:
        return self.root / self.config.files.solution

    @property
    def reference_path(self) -> Path | None:
        rel = self.config.files.reference
        path = self.root / rel if rel else None
        return path if path is not None and path.is_file() else None

    @property
    def public_dir(self) -> Path:
        return self.root / "public"

    def solution_files(self) -> list[Path]:
        """Every file the official score depends on (the solution, its sidecars, the
        reference)."""
        files = self.task.solution_files(self.solution_path)
        if self.reference_path is not None:
            files.append(self.reference_path)
        return files

    def solution_sha256(self) -> str:
        digest = hashlib.sha256()
        for path in self.solution_files():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    @property
    def store_url(self) -> str | None:
        return self.config.store.url

    def load_solution(self) -> Any:
        return self.task.load_solution(self.solution_path)

    def load_reference(self, solution: Any) -> Any:
        """The reference predictions a win rate is computed against, if any."""
        path = self.reference_path
        if path is None or not self.task.supports_reference:
            return None
        return self.task.load_reference(path, solution)

    def install_reference(self, path: Path) -> Path:
        """Make a valid submission file (e.g. the ALPACA baseline's) the reference of the win
        rate: checked against the solution, then written atomically into private/."""
        if not self.task.supports_reference:
            raise CompetitionDirError(f"task {self.task.name} has no reference predictions")
        rel = self.config.files.reference or "private/reference.csv"
        target = self.root / rel
        tmp = target.with_suffix(".tmp")
        try:
            # The bytes validated are the bytes installed: a copy first, then its check.
            tmp.write_bytes(self.submission(Path(path)).read_bytes())
            self.task.validate(self.submission(tmp), self.load_solution())
        except SubmissionError as e:
            tmp.unlink(missing_ok=True)
            raise e.located(str(path)) from None
        tmp.replace(target)
        if self.config.files.reference != rel:
            self.config.files.reference = rel
            (self.root / "competition.yaml").write_bytes(self.config.to_yaml())
        return target
