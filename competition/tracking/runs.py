"""MLflow tracking: the one module that talks to MLflow.

The submission store stays the source of truth for the leaderboard; MLflow is where runs are
compared and ensembles built from. Two audiences, two tracking stores:

- participants (`tracking_uri`): training runs, ensembles and one run per scored submission
  with the public score and the public split's detail metrics only;
- organizers (`organizer_tracking_uri`, a separate store so that the participants' one can be
  shown to a class): one run per scored submission with public, private and whole-split scores.

Experiments and runs are keyed by the competition's id (competition.yaml's `id`, unique per
prepared folder: `{id}` in the experiment name, tag `competition_id` on every run, and every
lookup of runs filtered by it); its name is only shown. Two folders of the same kind never
see each other's runs.

The organizers' local store keeps its artifacts under a root of its own
(`organizer_artifact_location`). With `team_experiment_name`, each team's participants' runs go
to an experiment of its own, which MLflow's basic-auth app can restrict to the team
(competition.tracking.users). Writes to a SQLite store are serialised across processes
(competition.tracking.locks), so concurrent submissions lose no run.

Configuration: `mlflow.yaml` (`$COMPETITION_MLFLOW_CONFIG`, else `./mlflow.yaml`, else the
defaults below); `MLFLOW_TRACKING_URI` overrides the participants' URI; relative SQLite paths
and artifact locations are relative to the configuration file. `COMPETITION_TRACKING=off`
turns logging off. Logging never fails a submission: an unreachable server is a warning.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from competition.formats.jsonsafe import finite
from competition.tracking.config import CompetitionKey, TrackingConfig, load_config
from competition.tracking.locks import RetryingClient, exclusive, sqlite_file

AUDIENCES = ("participants", "organizers")
PREDICTIONS_ARTIFACT = "predictions/predictions.npz"
# MLflow 3 opens an experiment on its runs table only if it is marked as model development
# (otherwise on the GenAI view, with the runs behind a toggle).
KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
ID_TAG = "competition_id"  # on experiments and runs: the key every lookup is scoped by
ANY_ID = "[A-Za-z0-9_-]+"  # configs.ID_PATTERN, inside an experiment name
log = logging.getLogger(__name__)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


class Tracker:
    """One audience's tracking store; for the participants' one, with team experiments
    (`team_experiment_name`), the experiment of `team`."""

    def __init__(self, config: TrackingConfig, audience: str = "participants",
                 team: str | None = None):
        if audience not in AUDIENCES:
            raise ValueError(audience)
        self.config = config
        self.audience = audience
        self.team = team
        uri = config.uri(audience)
        if uri is None:
            raise ValueError(f"no {audience}' tracking store is configured")
        self.uri: str = uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient  # slow to import: only when logging

            # No download progress bars in command output; no schema-upgrade chatter.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)

            client = RetryingClient(MlflowClient(tracking_uri=self.uri))
            if sqlite_file(self.uri) is not None:
                with self.writing():  # the first opening creates or migrates the schema
                    client.search_experiments(max_results=1)
            self._client = client
        return self._client

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """The store's write lock (SQLite files only; reentrant)."""
        return exclusive(self.uri, self.config.lock_seconds)

    def experiment_name(self, competition: CompetitionKey) -> str:
        return self.config.experiment(competition, self.audience, self.team)

    def experiment_id(self, competition: CompetitionKey) -> str:
        from mlflow.exceptions import MlflowException

        name = self.experiment_name(competition)
        with self.writing():
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                return str(found.experiment_id)
            # A server keeps artifacts where it was told to; a local store where we say.
            location = None if is_remote(self.uri) else self.config.artifact_root(self.audience)
            tags = {KIND_TAG: MODEL_DEVELOPMENT, "competition": competition.name,
                    ID_TAG: competition.required_id(),
                    "mlflow.note.content": f"Competition {competition.name} (id "
                                           f"{competition.id}, prepared in {competition.where})"}
            try:
                return str(self.client.create_experiment(name, artifact_location=location,
                                                         tags=tags))
            except MlflowException:  # created meanwhile by another process (a server)
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return str(found.experiment_id)

    def artifacts_are_private(self, run_id: str) -> bool:
        """Whether an organizers' run keeps its artifacts outside the participants' root (an
        experiment made before the roots were separate may not: then none are logged)."""
        root = self.config.artifact_location
        if self.audience != "organizers" or not root or is_remote(self.uri):
            return True
        where = str(self.client.get_run(run_id).info.artifact_uri)
        inside = where == root or where.startswith(root.rstrip("/") + "/")
        if inside:
            log.warning("the organizers' experiment keeps its artifacts in the participants' "
                        "artifact root (%s): no artifact logged; rename that experiment so "
                        "that a new one is made under organizer_artifact_location", where)
        return not inside

    def runs_page(self, competition: CompetitionKey | None = None) -> str:
        """The UI route of a competition's runs table (this tracker's team's, with team
        experiments; without a competition: of the only competition in the store, else the
        list of experiments)."""
        template = self.config.experiment_name.replace("{audience}", self.audience)
        if self.team and self.audience == "participants" and self.config.team_experiment_name:
            template = self.config.team_experiment_name.replace("{team}", self.team)
        pattern = re.escape(template).replace(re.escape("{competition}"), ".+") \
            .replace(re.escape("{id}"), ANY_ID)
        wanted = self.experiment_name(competition) if competition else None
        found = [e for e in self.client.search_experiments()
                 if e.name == wanted or (wanted is None and re.fullmatch(pattern, e.name))]
        if len(found) != 1:
            return "#/experiments"
        experiment = found[0]
        if experiment.tags.get(KIND_TAG) != MODEL_DEVELOPMENT:
            with self.writing():
                self.client.set_experiment_tag(experiment.experiment_id, KIND_TAG,
                                               MODEL_DEVELOPMENT)
        return f"#/experiments/{experiment.experiment_id}/runs"

    def start(self, competition: CompetitionKey, run_name: str, tags: dict[str, Any]) -> str:
        tags = {"competition": competition.name, **tags, ID_TAG: competition.required_id()}
        with self.writing():
            run = self.client.create_run(self.experiment_id(competition), run_name=run_name,
                                         tags={k: str(v) for k, v in tags.items()})
        return str(run.info.run_id)

    def log(self, run_id: str, params: dict[str, Any] | None = None,
            metrics: dict[str, float] | None = None, step: int = 0,
            tags: dict[str, Any] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = _millis()
        with self.writing():
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()
                         if finite(v) is not None],
                params=[Param(k, _param(v)) for k, v in (params or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            self.log_file(run_id, path, str(Path(artifact_file).parent))

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """A file, or a folder's files, under `artifact_path`."""
        where = None if artifact_path in (None, "", ".") else artifact_path
        with self.writing():
            if Path(path).is_dir():
                self.client.log_artifacts(run_id, str(path), where)
            else:
                self.client.log_artifact(run_id, str(path), where)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        with self.writing():
            self.client.set_terminated(run_id, status)

    def runs(self, competition: CompetitionKey, filter_string: str = "",
             every_team: bool = False) -> list[Any]:
        """Runs of this tracker's experiment; with `every_team`, of every participants'
        experiment of the competition this client may read (the shared one and the teams').
        Only runs tagged with the competition's id: an experiment is the competition's own,
        and this holds even where a run was moved or logged by hand."""
        if every_team:
            ids = self.experiment_ids(competition)
        else:
            found = self.client.get_experiment_by_name(self.experiment_name(competition))
            ids = [] if found is None else [str(found.experiment_id)]
        if not ids:
            return []
        scoped = f"tags.{ID_TAG} = '{competition.required_id()}'"
        if filter_string.strip():
            scoped += f" and {filter_string}"
        return list(self.client.search_runs(ids, scoped, max_results=5000))

    def experiment_ids(self, competition: CompetitionKey) -> list[str]:
        """The ids of the competition's experiments of this audience (shared and per team)."""
        shared = self.config.experiment(competition, self.audience)
        template = self.config.team_experiment_name if self.audience == "participants" \
            else None
        team = re.compile(re.escape(template)
                          .replace(re.escape("{competition}"), re.escape(competition.name))
                          .replace(re.escape("{id}"), re.escape(competition.required_id()))
                          .replace(re.escape("{team}"), ".+")) if template else None
        return [str(e.experiment_id) for e in self.client.search_experiments()
                if e.name == shared or (team is not None and team.fullmatch(e.name))]

    def download(self, run_id: str, artifact: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, artifact, str(dst)))


def _millis() -> int:
    import time

    return int(time.time() * 1000)


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def warn(what: str, error: Exception) -> None:
    log.warning("MLflow logging of %s failed (%s: %s); nothing else is affected", what,
                type(error).__name__, error)


# --- flattening score details (pure) ---------------------------------------------------------

def numeric_fields(fields: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a score's detail fields, nested keys joined by dots (lists and
    text are left out: tables go to CSV artifacts)."""
    out: dict[str, float] = {}
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numeric_fields(value, name + "."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)) and finite(value) is not None:
            out[name] = float(value)
    return out


def rows_csv(rows: list[dict[str, Any]]) -> bytes:
    """CSV of flat rows (lists dropped), columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, list)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


# --- scored submissions ----------------------------------------------------------------------

@dataclass(frozen=True)
class SubmissionRecord:
    """What the store knows of one scored submission, plus the scorer's details."""

    competition: CompetitionKey
    task: str
    submission_id: int
    team: str
    file_sha256: str
    scorer_version: str
    solution_sha256: str
    public_score: float | None
    private_score: float | None
    score: float | None
    details: dict[str, dict[str, Any]]  # "public" and "all": the score's detail fields
    rows: list[dict[str, Any]]  # per item, with "usage"
    item_kind: str  # what a row is: image, slice or specimen
    reason: str = "submit"
    event: int | None = None  # the store's score-history row: each event is logged once


def submission_runs(record: SubmissionRecord, config: TrackingConfig | None = None) -> list[str]:
    """Log one participants' run (public only) and one organizers' run; returns the run ids
    of the stores that hold it now (an event logged before is found, not logged twice)."""
    config = config or load_config()
    if not config.enabled:
        return []
    ids = []
    for audience in AUDIENCES:
        if config.uri(audience) is None:
            continue
        tracker = Tracker(config, audience, record.team)
        try:
            with tracker.writing():  # the whole run at once: one writer per SQLite store
                ids.append(_submission_run(tracker, record))
        except Exception as e:  # the store already holds the outcome: never lose it
            warn(f"submission {record.submission_id} ({audience})", e)
    return ids


def audiences(config: TrackingConfig) -> int:
    """How many stores a scored submission is logged to."""
    return sum(config.uri(audience) is not None for audience in AUDIENCES)


def _submission_run(tracker: Tracker, record: SubmissionRecord) -> str:
    organizer = tracker.audience == "organizers"
    tags = {"kind": "submission", "competition": record.competition.name,
            "submission_id": record.submission_id, "team": record.team,
            "reason": record.reason}
    if record.event is not None:
        # Logging again what a killed job logged already (its result was committed, its
        # pending mark not yet cleared) must not make a second run.
        tags["score_event"] = record.event
        done = tracker.runs(record.competition, f"tags.score_event = '{record.event}'")
        if done:
            return str(done[0].info.run_id)
    run_id = tracker.start(record.competition, f"submission-{record.submission_id}", tags)
    metrics = {"public_score": record.public_score,
               **numeric_fields(record.details.get("public", {}), "public.")}
    rows = [r for r in record.rows if r.get("usage") == "Public"]
    if organizer:
        metrics.update({"private_score": record.private_score, "score": record.score,
                        **numeric_fields(record.details.get("all", {}), "all.")})
        rows = record.rows
    params = {"competition": record.competition.name, "task": record.task,
              "team": record.team, "submission_id": record.submission_id,
              "file_sha256": record.file_sha256, "scorer_version": record.scorer_version}
    if organizer:
        params["solution_sha256"] = record.solution_sha256
    tracker.log(run_id, params=params,
                metrics={k: v for k, v in metrics.items() if v is not None})  # NaN too
    if not tracker.artifacts_are_private(run_id):
        tracker.end(run_id)
        return run_id
    if tracker.config.item_tables:
        tracker.log_bytes(run_id, rows_csv(rows), f"scores/per_{record.item_kind}.csv")
    # The task says which of its detail fields are tables (e.g. per landmark): a CSV each.
    from competition.tasks import get_task

    task = get_task(record.task)
    for split in ("public", "all") if organizer else ("public",):
        for table in task.detail_tables(record.details.get(split, {})):
            tracker.log_bytes(run_id, rows_csv(table.rows), f"scores/{table.name}_{split}.csv")
    tracker.end(run_id)
    return run_id


# --- training runs ---------------------------------------------------------------------------

class TrainingRun:
    """A training run in the participants' store; a no-op object when tracking is off."""

    def __init__(self, tracker: Tracker | None, run_id: str | None):
        self.tracker = tracker
        self.run_id = run_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _safe(self, what: str, method: str, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            getattr(self.tracker, method)(self.run_id, *args, **kwargs)
        except Exception as e:
            warn(f"{what} of run {self.run_id}", e)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._safe("epoch metrics", "log", metrics=metrics, step=epoch)

    def log(self, params: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
            tags: dict[str, Any] | None = None) -> None:
        self._safe("values", "log", params=params, metrics=metrics, tags=tags)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self._safe(f"artifact {Path(path).name}", "log_file", path, artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self._safe("the end", "end", status)


@contextlib.contextmanager
def training_run(competition: CompetitionKey, run_name: str, tags: dict[str, Any],
                 config: TrackingConfig | None = None,
                 audience: str = "participants") -> Iterator[TrainingRun]:
    """A participants' run around training (tag `team`: the team that made it, whose
    experiment it goes to with team experiments), or an organizers' one (a final fit, which
    trained on hidden labels: logged where participants cannot read, or nowhere when the
    organizers have no store); ended KILLED when the process is interrupted or terminated
    (Ctrl-C, SIGTERM), FAILED if the body raises, not left RUNNING. A competition without an
    id is refused before any training (see CompetitionKey)."""
    config = config or load_config()
    run = TrainingRun(None, None)
    if config.enabled and config.uri(audience) is not None:
        competition.required_id()
        # With team experiments, in the experiment of the team the run is tagged with.
        tracker = Tracker(config, audience, tags.get("team") if audience == "participants"
                          else None)
        try:
            run = TrainingRun(tracker, tracker.start(competition, run_name, tags))
        except Exception as e:
            warn(f"the start of run {run_name}", e)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield run
    except (KeyboardInterrupt, SystemExit):
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    run.end()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM's default kills without unwinding: exit instead, as a shell would report it."""
    raise SystemExit(128 + signum)

