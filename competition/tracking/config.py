"""Where runs are logged: `mlflow.yaml` (`$COMPETITION_MLFLOW_CONFIG`, else `./mlflow.yaml`,
else the defaults), `MLFLOW_TRACKING_URI` over the participants' URI, `COMPETITION_TRACKING=off`
to log nothing. Relative SQLite paths and artifact locations are relative to the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from competition.errors import ConfigError

CONFIG_ENV = "COMPETITION_MLFLOW_CONFIG"
SWITCH_ENV = "COMPETITION_TRACKING"


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str
    organizer_tracking_uri: str | None
    experiment_name: str
    artifact_location: str | None
    enabled: bool = True
    item_tables: bool = False

    def uri(self, audience: str) -> str | None:
        return self.tracking_uri if audience == "participants" else self.organizer_tracking_uri

    def experiment(self, competition: str, audience: str) -> str:
        return self.experiment_name.format(competition=competition, audience=audience)


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
    return TrackingConfig(
        tracking_uri=_absolute_uri(uri, base),
        organizer_tracking_uri=_absolute_uri(organizer, base) if organizer else None,
        experiment_name=values.experiment_name,
        artifact_location=_absolute_location(values.artifact_location, base),
        enabled=enabled, item_tables=values.item_tables)


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


