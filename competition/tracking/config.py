"""Where runs are logged: `mlflow.yaml` (`$COMPETITION_MLFLOW_CONFIG`, else `./mlflow.yaml`,
else the defaults), `MLFLOW_TRACKING_URI` over the participants' URI, `COMPETITION_TRACKING=off`
to log nothing. Relative SQLite paths and artifact locations are relative to the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from competition.errors import CompetitionDirError, ConfigError

CONFIG_ENV = "COMPETITION_MLFLOW_CONFIG"
SWITCH_ENV = "COMPETITION_TRACKING"


@dataclass(frozen=True)
class CompetitionKey:
    """A competition as MLflow knows it: experiments and runs are keyed by `id`, unique per
    prepared folder; `name` is only shown (folders of one kind share it); `where`: the
    folder, for messages."""

    id: str | None
    name: str
    where: str = "DIR"

    def required_id(self) -> str:
        """The id; a competition prepared before ids has none, and is not logged under a
        guess (its name is shared, a path changes when the folder moves)."""
        if self.id is None:
            raise CompetitionDirError(
                f"{self.where}: competition.yaml has no id (prepared before competitions "
                "had one), so its MLflow runs cannot be told from another competition's: "
                f"run `competition migrate {self.where}` once to give it one (or set "
                f"{SWITCH_ENV}=off to work without tracking)")
        return self.id


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str
    organizer_tracking_uri: str | None
    experiment_name: str
    artifact_location: str | None
    enabled: bool = True
    item_tables: bool = False
    organizer_artifact_location: str | None = None
    team_experiment_name: str | None = None  # participants' runs: one experiment per team
    lock_seconds: float = 120

    def uri(self, audience: str) -> str | None:
        return self.tracking_uri if audience == "participants" else self.organizer_tracking_uri

    def artifact_root(self, audience: str) -> str | None:
        """Where a local store of `audience` keeps artifacts (a server: where it was told)."""
        return self.artifact_location if audience == "participants" else \
            self.organizer_artifact_location

    def experiment(self, competition: CompetitionKey, audience: str,
                   team: str | None = None) -> str:
        """The experiment of `audience`'s runs; with team experiments, a participants' run
        of `team` goes to that team's own."""
        names = {"competition": competition.name, "id": competition.required_id()}
        if audience == "participants" and team and self.team_experiment_name:
            return self.team_experiment_name.format(**names, team=team)
        return self.experiment_name.format(**names, audience=audience)


def load_config(path: Path | None = None) -> TrackingConfig:
    """The tracking configuration (see the module docstring for where it is looked up)."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
        if not path.is_file():
            raise ConfigError(f"{path}: ${CONFIG_ENV} names no file")
    if path is None and Path("mlflow.yaml").is_file():
        path = Path("mlflow.yaml")
    from competition import configs

    base = Path.cwd()
    values = configs.TrackingFile()
    if path is not None:
        values = configs.load(configs.TrackingFile, Path(path))
        base = Path(path).resolve().parent
    enabled = values.enabled and \
        os.environ.get(SWITCH_ENV, "on").lower() not in ("0", "off", "false", "no")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or values.tracking_uri
    organizer = values.organizer_tracking_uri
    config = TrackingConfig(
        tracking_uri=_absolute_uri(uri, base),
        organizer_tracking_uri=_absolute_uri(organizer, base) if organizer else None,
        experiment_name=values.experiment_name,
        artifact_location=_absolute_location(values.artifact_location, base),
        enabled=enabled, item_tables=values.item_tables,
        organizer_artifact_location=_absolute_location(values.organizer_artifact_location,
                                                       base),
        team_experiment_name=values.team_experiment_name, lock_seconds=values.lock_seconds)
    _check_separate(config, path)
    return config


def _check_separate(config: TrackingConfig, path: Path | None) -> None:
    """The organizers' artifacts (private scores) never under the participants' root."""
    ours, theirs = config.organizer_artifact_location, config.artifact_location
    if not ours or not theirs or not ours.startswith("file:") or not theirs.startswith("file:"):
        return
    a, b = (Path(unquote(urlparse(uri).path)) for uri in (ours, theirs))
    if a == b or b in a.parents or a in b.parents:
        raise ConfigError(f"{path or 'mlflow.yaml'}: organizer_artifact_location {a} and "
                          f"artifact_location {b} must be separate folders (the organizers' "
                          "artifacts hold private scores)")


def _absolute_uri(uri: str, base: Path) -> str:
    """`sqlite:///x.db` is relative to the working directory in SQLAlchemy; pin it to `base`."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((base / uri[len(prefix):]).resolve())
    if "://" not in uri:  # a plain folder: MLflow's file store (deprecated, but accepted)
        return str((base / uri).resolve())
    return uri


def _absolute_location(location: str | None, base: Path) -> str | None:
    if not location:
        return None
    if "://" in location or location.startswith("mlflow-artifacts:"):
        return location
    return (base / location).resolve().as_uri()


