"""A prepared competition, addressed by its directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from competition.errors import CompetitionDirError, SubmissionError
from competition.tasks import TASKS, Task


@dataclass
class PreparedCompetition:
    root: Path
    config: dict[str, Any]

    @classmethod
    def open(cls, root: Path | str) -> PreparedCompetition:
        root = Path(root)
        config_path = root / "competition.yaml"
        if not config_path.is_file():
            raise CompetitionDirError(
                f"{root}: not a prepared competition (no competition.yaml); "
                "create one with `competition prepare`")
        try:
            config = yaml.safe_load(config_path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CompetitionDirError(f"{config_path}: not valid YAML ({e})") from None
        if not isinstance(config, dict) or config.get("task") not in TASKS:
            raise CompetitionDirError(f"{config_path}: 'task' must be one of {', '.join(TASKS)}")
        comp = cls(root, config)
        if not comp.solution_path.is_file():
            raise CompetitionDirError(f"{root}: the solution {comp.solution_path} is missing")
        return comp

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.root.name)

    @property
    def task(self) -> Task:
        return TASKS[self.config["task"]]

    @property
    def rules(self) -> dict[str, Any]:
        return dict(self.config.get("rules") or {})

    @property
    def max_submission_bytes(self) -> int:
        return int(float(self.rules.get("max_submission_mb", 200)) * 1024 * 1024)

    def _file(self, key: str) -> Path | None:
        rel = (self.config.get("files") or {}).get(key)
        return self.root / rel if rel else None

    @property
    def solution_path(self) -> Path:
        path = self._file("solution")
        if path is None:
            raise CompetitionDirError(f"{self.root}/competition.yaml: files.solution is not set")
        return path

    @property
    def reference_path(self) -> Path | None:
        path = self._file("reference")
        return path if path is not None and path.is_file() else None

    @property
    def public_dir(self) -> Path:
        return self.root / "public"

    def solution_files(self) -> list[Path]:
        """Every file the official score depends on (the solution, its Usage sidecar, the
        reference)."""
        files = [self.solution_path]
        sidecar = self.solution_path.with_suffix(".csv")
        if sidecar != self.solution_path and sidecar.is_file():
            files.append(sidecar)
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
        return (self.config.get("store") or {}).get("url")

    def load_solution(self):
        return self.task.load_solution(self.solution_path)

    def load_reference(self, solution):
        """The reference predictions a win rate is computed against (landmarks), if any."""
        path = self.reference_path
        if path is None or not hasattr(self.task, "load_reference"):
            return None
        return self.task.load_reference(path, solution)

    def install_reference(self, path: Path) -> Path:
        """Make a valid submission file (e.g. the ALPACA baseline's) the reference of the win
        rate: checked against the solution, then written atomically into private/."""
        from competition.scoring import read_submission_file

        if not hasattr(self.task, "load_reference"):
            raise CompetitionDirError(f"task {self.task.name} has no reference predictions")
        target = self._file("reference") or self.root / "private" / "reference.csv"
        data = read_submission_file(Path(path), self.max_submission_bytes)
        try:
            self.task.validate(data, self.load_solution())
        except SubmissionError as e:
            raise e.located(str(path)) from None
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        if not (self.config.get("files") or {}).get("reference"):
            files = dict(self.config.get("files") or {})
            files["reference"] = str(target.relative_to(self.root))
            self.config["files"] = files
            (self.root / "competition.yaml").write_text(yaml.safe_dump(self.config,
                                                                      sort_keys=False))
        return target
