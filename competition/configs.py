"""Configuration files as Pydantic models: `competition.yaml`, `mlflow.yaml`, entry configs.

Every model forbids unknown keys, so a misspelt key is an error that names the file, the key
and the closest valid key instead of a setting silently ignored. `read_yaml` and `parse` are
the one way configuration is read.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from competition.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)
STRICT = ConfigDict(extra="forbid")
# Keys that were valid once, with what to do instead.
RETIRED = {
    "score_direction": "the task sets the score direction; delete this key",
}


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (an empty file is an empty mapping)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: unreadable ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got "
                          f"{type(doc).__name__}")
    return doc


def parse(model: type[Model], data: dict[str, Any], source: str) -> Model:
    """`data` validated as `model`; any problem is one ConfigError naming `source`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        # Each problem by its key too (e.g. "rules.daily_limit"), so that a form can show
        # the message beside its field; the text is the one message either way.
        problems = {".".join(str(part) for part in err["loc"]) or "(top level)":
                    _describe(model, err) for err in e.errors()}
        error = ConfigError(f"{source}: " + "; ".join(problems.values()))
        error.problems = problems
        raise error from None


def load(model: type[Model], path: Path) -> Model:
    return parse(model, read_yaml(path), str(path))


def _describe(model: type[BaseModel], error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        hint = RETIRED.get(loc[-1])
        if hint:
            return f"key {key} is no longer used: {hint}"
        valid = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        suggestion = f" (did you mean {'.'.join([*loc[:-1], close[0]])}?)" if close else \
            (f" (valid keys: {', '.join(valid)})" if valid else "")
        return f"unknown key {key}{suggestion}"
    if error["type"] == "missing":
        return f"key {key} is required"
    return f"{key}: {error['msg'].removeprefix('Value error, ')}"


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) model at `path`."""
    current: Any = model
    for part in path:
        if part.isdigit():  # an item of a list of models (e.g. grading.steps.0)
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current = fields[part].annotation
        current = next((a for a in getattr(current, "__args__", ()) if
                        isinstance(a, type) and issubclass(a, BaseModel)), current)
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def strict_model(name: str, keys: list[str]) -> type[BaseModel]:
    """A model that accepts exactly `keys`, each of any type (an entry's configuration,
    whose schema is its config.yaml)."""
    from pydantic import create_model

    fields: dict[str, Any] = {key: (Any, None) for key in keys}
    return create_model(name, __config__=STRICT, **fields)


# --- competition.yaml ---------------------------------------------------------------------

MAX_INTEGER = 2**31 - 1  # what a database's INTEGER column holds

def _naive_utc(value: Any) -> Any:
    """Times are kept as naive UTC; a date alone is its midnight (UTC)."""
    if isinstance(value, dt.datetime):
        try:
            return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00: past the last UTC time
            raise ValueError(f"{value.isoformat()} is out of range in UTC") from None
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date-time (e.g. 2026-12-01T23:59:00Z)") \
                from None
        return _naive_utc(parsed)
    return value


class RulesConfig(BaseModel):
    """The rules of a competition, as the organizer may edit them."""

    model_config = STRICT
    start: dt.datetime | None = None
    deadline: dt.datetime | None = None
    daily_limit: PositiveInt = 5
    final_selections: PositiveInt = 2
    public_fraction: float = Field(default=1 / 3, gt=0, lt=1)
    max_submission_mb: PositiveFloat = 200
    # The board's rules against hostile participants (issue 16, board rules): every upload,
    # whatever became of it (scored, invalid, failed, duplicate, refused by the daily limit),
    # counts toward this many per team in any sliding hour; a submission's message is at most
    # this many characters.
    uploads_per_hour: PositiveInt = 20
    max_message_chars: PositiveInt = 1000
    # Late submissions (issue 28), as Kaggle's: with this on, submissions made at or after the
    # deadline are taken (every other limit holds, the daily limit included), scored and
    # shown on a late board with their public and private scores, never ranked (not on the
    # public or private board, not in the grades, not a final selection). Off: 403 after the
    # deadline. Under the rule, whether a submission is late is read from its time and the
    # deadline in force (competition.board.rules.Rules.is_late); without it nothing is late.
    late_submissions: bool = False
    # Team forming (issue 28), as Kaggle InClass: students form teams themselves with
    # invitation codes (join one team, merge a whole team into another, leave;
    # competition.board.team_forming) until the merger deadline, in teams of at most
    # `team_size_limit` students (null: any size). `merger_deadline` null: teams can change
    # until the deadline; it may not be after the deadline. From then on teams are frozen
    # (the organizer's `team move` still moves a student).
    team_size_limit: PositiveInt | None = None
    merger_deadline: dt.datetime | None = None

    # Leaderboard order (MRI task plugin, issue 20): "score" ranks by the task's score;
    # "mean_of_ranks" ranks each test item on each of the task's item metrics (Task.
    # item_metrics), averages a team's ranks over items and metrics, and orders by that mean
    # (lower first), as BraTS does; the score is still shown.
    ranking: Literal["score", "mean_of_ranks"] = "score"

    # Scoring limits (issue 16, hostile files): each scoring child process may add at most
    # this much memory (MB of address space, its pool workers included) to what it held when
    # it started, and use at most this much CPU time (seconds). A task may need more
    # (Task.scoring_memory_mb/scoring_cpu_seconds): the larger value applies. A file that
    # makes the scorer pass a limit is `invalid`, with a message naming the limit.
    scoring_memory_mb: PositiveInt = 2048
    scoring_cpu_seconds: PositiveInt = 120

    _times = field_validator("start", "deadline", "merger_deadline", mode="before")(_naive_utc)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """Every count fits a database integer (the daily limit is stored with each
        submission) and every number is finite: rules are edited from forms and the API
        (competition.board.rule_edits), where `1e30` or `inf` is one keystroke away."""
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_INTEGER:
            raise ValueError(f"{value} is too large (at most {MAX_INTEGER:,})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if isinstance(value, float) and value > MAX_INTEGER:
            raise ValueError(f"{value:g} is too large (at most {MAX_INTEGER:,})")
        return value

    @field_serializer("start", "deadline", "merger_deadline")
    def _utc_text(self, value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat() + "Z"

    @model_validator(mode="after")
    def _merger_before_deadline(self) -> RulesConfig:
        # Teams frozen after the competition ended would change nothing; one after would
        # promise students a change the portal refuses.
        if self.merger_deadline is not None and self.deadline is not None and \
                self.merger_deadline > self.deadline:
            raise ValueError(f"merger_deadline ({self.merger_deadline.isoformat()}Z) is after "
                             f"the deadline ({self.deadline.isoformat()}Z): teams can change "
                             "only until the deadline")
        return self


class FilesConfig(BaseModel):
    model_config = STRICT
    solution: str
    reference: str | None = None


class StoreConfig(BaseModel):
    model_config = STRICT
    url: str | None = None


class PortalConfig(BaseModel):
    """What the portal and its scoring queue grant any one team, and everyone together
    (issue 33, hostile participants): refusals come from the request's headers and the
    session, before a byte of an upload is stored."""

    model_config = STRICT
    # Uploads being received at once: per team (a 429 past it), and in all (a 503: the
    # portal is busy, no team is at fault).
    uploads_in_flight_per_team: PositiveInt = 2
    uploads_in_flight: PositiveInt = 64
    # Temporary space that uploads being received may take in all, in MB, counted as their
    # bytes arrive (a 507 past it); null: eight uploads at the competition's size limit
    # (rules.max_submission_mb). One upload's own cap is max_submission_mb.
    upload_space_mb: PositiveFloat | None = None
    # An upload whose body stops arriving for this many seconds is stopped (408), so that a
    # stalled client does not hold its slot.
    upload_idle_seconds: PositiveFloat = 30
    # Sign-in attempts (the form, and bearer tokens the API does not know) within a window
    # of `sign_in_window_seconds`: failed ones per client address; any per token prefix
    # (the first 8 characters of the token tried); a token tried again in the window counts
    # once (a script polling with a replaced token is not a new guess). Successful sign-ins
    # never count against an address, so a whole class behind one address signs in; 100
    # failures in 10 minutes leave room for a class's typos and still cap guessing at 0.17
    # a second, against 192-bit tokens.
    sign_in_window_seconds: PositiveInt = 600
    sign_in_failures_per_address: PositiveInt = 100
    sign_in_attempts_per_token_prefix: PositiveInt = 10
    # Scoring: the CPU seconds one team's jobs may hold in flight (each job counts its CPU
    # limit, rules.scoring_cpu_seconds or the task's); null: two jobs' worth. Jobs are taken
    # round-robin across teams whatever this is.
    team_cpu_seconds_in_flight: PositiveInt | None = None


class CodeConfig(BaseModel):
    """How a code submission runs (issue 32): the limits of one run of a participant's entry
    (fit on the public training data, or a model carried in the zip, then predict the hidden
    test inputs) and its sandbox. A run that passes a limit ends `failed`, naming it."""

    model_config = STRICT
    wall_seconds: PositiveInt = 900
    cpu_seconds: PositiveInt = 1800  # all of the entry's processes together
    memory_mb: PositiveInt = 4096  # resident memory of all its processes together
    processes: PositiveInt = 64  # processes and threads at once
    disk_mb: PositiveInt = 1024  # what it may write (its output folder, each file)
    log_kb: PositiveInt = 256  # the last this-many KB of stdout and of stderr are kept
    # "bwrap": bubblewrap (no network, the hidden inputs read-only, nothing else of the
    # machine); "none": a plain process under the same limits, for an organizer's trusted
    # entries only (the rules page says so).
    sandbox: Literal["bwrap", "none"] = "bwrap"


def _grade_text(value: Any) -> Any:
    # `grade: 10` in YAML is a number; grades are text (letters or points) either way.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else value


class GradeStep(BaseModel):
    """One step of a grade rule: the bound a team must reach, and its grade. Which key bounds
    it is the scheme's (GradingConfig)."""

    model_config = STRICT
    grade: str
    min: float | None = None  # thresholds, higher-is-better score: at least this
    max: float | None = None  # thresholds, lower-is-better score: at most this
    top: float | None = Field(default=None, gt=0, le=1)  # ranks: rank/teams at most this
    beat: str | None = None  # baselines: a private score better than this baseline team's

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value

    _text = field_validator("grade", mode="before")(_grade_text)


SCHEME_KEY = {"thresholds": ("min", "max"), "ranks": ("top",), "baselines": ("beat",)}


class GradingConfig(BaseModel):
    """The grade rule (issue 28): each student gets the grade of their team's final private
    score, by the first step (best first) the team reaches; `below` if it reaches none,
    `missing` if the team has no private score (no valid submission). Baselines get none.

    - thresholds: steps of `{min: 0.8, grade: A}` on the private score (`max` for a
      lower-is-better score), best first: each bound stricter than the next.
    - ranks: steps of `{top: 0.1, grade: A}`: the team's private rank among participant
      teams, divided by their number, is at most `top` (0.1: the top 10 %).
    - baselines: steps of `{beat: baseline-strong, grade: "10"}`: the team's private score is
      better than (not equal to) the organizers' baseline team's; the hardest baseline first.
    """

    model_config = STRICT
    scheme: Literal["thresholds", "ranks", "baselines"]
    steps: list[GradeStep] = Field(min_length=1)
    below: str = ""
    missing: str = ""

    _text = field_validator("below", "missing", mode="before")(_grade_text)

    @model_validator(mode="after")
    def _monotone(self) -> GradingConfig:
        # Steps are tried in order, so one easier than a later step would hide it: refused.
        allowed = SCHEME_KEY[self.scheme]
        for k, step in enumerate(self.steps):
            given = [key for key in ("min", "max", "top", "beat")
                     if getattr(step, key) is not None]
            if len(given) != 1 or given[0] not in allowed:
                raise ValueError(f"steps.{k}: a {self.scheme} step has one of "
                                 f"{' or '.join(allowed)} and a grade (got "
                                 f"{', '.join(given) or 'none'})")
        keys = {next(key for key in allowed if getattr(s, key) is not None) for s in self.steps}
        if len(keys) > 1:
            raise ValueError("steps: use min on every step (higher is better) or max on "
                             "every step (lower is better), not both")
        key = keys.pop()
        values = [getattr(s, key) for s in self.steps]
        if key == "beat":
            if len(set(values)) < len(values):
                raise ValueError("steps: a baseline team is named twice")
            return self
        # min: each bound above the next; max and top: each below the next.
        falling = key == "min"
        for k in range(1, len(values)):
            if (values[k] >= values[k - 1]) if falling else (values[k] <= values[k - 1]):
                raise ValueError(
                    f"steps are not monotone: steps.{k}.{key} ({values[k]:g}) must be "
                    f"{'below' if falling else 'above'} steps.{k - 1}.{key} "
                    f"({values[k - 1]:g}); list the best grade first")
        return self

    def direction_problem(self, higher_is_better: bool) -> str | None:
        """Why the thresholds do not fit the task's score direction (None: they do)."""
        if self.scheme != "thresholds":
            return None
        want, other = ("min", "max") if higher_is_better else ("max", "min")
        if getattr(self.steps[0], want) is None:
            better = "higher" if higher_is_better else "lower"
            return (f"grading.steps: the task's score is {better}-is-better, so each step "
                    f"bounds it with {want}, not {other}")
        return None


# A competition's id: what MLflow keys its experiments and runs by (letters, digits, - and _,
# so that it can stand in an experiment's name).
ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


def new_competition_id() -> str:
    import uuid

    return uuid.uuid4().hex


class CompetitionConfig(BaseModel):
    """`competition.yaml`: what `prepare` writes and the organizer may edit."""

    model_config = STRICT
    name: str
    # Unique per prepared competition (`prepare` draws one; `competition migrate DIR` gives
    # one to a competition prepared before ids): two folders of the same kind and name are
    # two competitions to MLflow. The name is only shown.
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    title: str = ""
    kind: str = ""
    task: str
    seed: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    files: FilesConfig
    # What participants upload (issue 32): prediction files, code (a zip of an entry folder,
    # run sandboxed on the hidden test inputs, which are then not published), or either.
    submission: Literal["files", "code", "both"] = "files"
    code: CodeConfig = Field(default_factory=CodeConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    portal: PortalConfig = Field(default_factory=PortalConfig)
    # The grade rule of the grades export (GradingConfig); null: the grade column is empty.
    grading: GradingConfig | None = None

    def to_yaml(self) -> bytes:
        """Stable bytes (no timestamps, keys in declaration order); no grade rule, no key."""
        doc = self.model_dump(mode="json")
        if doc["grading"] is None:
            del doc["grading"]
        return yaml.safe_dump(doc, sort_keys=False).encode()


def give_id(path: Path) -> str | None:
    """Write a new id into the competition.yaml at `path` if it has none; returns the new id
    (None: it had one, left as it is). Only the `id` line is added: the organizer's edits,
    comments included, stay as they are."""
    config = load(CompetitionConfig, path)
    if config.id is not None:
        return None
    new = new_competition_id()
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    # A top-level `id: null` (written by a harness that knew the key) is replaced; the id
    # goes after the name, where `prepare` writes it.
    kept = [line for line in lines if not line.startswith("id:")]
    at = next((k + 1 for k, line in enumerate(kept) if line.startswith("name:")), 0)
    if at and not kept[at - 1].endswith("\n"):
        kept[at - 1] += "\n"
    kept.insert(at, f"id: {new}\n")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    try:  # the file is replaced only by one that reads as before, with the id
        same = load(CompetitionConfig, tmp) == config.model_copy(update={"id": new})
    except ConfigError:
        same = False
    if not same:
        tmp.unlink()
        raise ConfigError(f"{path}: could not add the line `id: {new}`; add it by hand")
    tmp.replace(path)
    return new


# --- mlflow.yaml --------------------------------------------------------------------------

class TrackingFile(BaseModel):
    """`mlflow.yaml`: where runs are logged (see competition.tracking)."""

    model_config = STRICT
    tracking_uri: str = "sqlite:///mlflow.db"
    organizer_tracking_uri: str | None = "sqlite:///mlflow-organizers.db"
    # Experiments are keyed by the competition's id ({id}, from competition.yaml); {competition}
    # is its name, shown beside it (two folders of the same kind share a name).
    experiment_name: str = "{competition}/{id}/{audience}"
    artifact_location: str | None = "mlruns"
    enabled: bool = True
    # A CSV of every test item's score with each scored submission: off by default (an
    # artifact per submission and store); the store keeps the item scores anyway.
    item_tables: bool = False
    # Tracking isolation (issue 16, tracking): the organizers' store keeps its artifacts
    # (private scores) under a root of its own, never beside the participants' files.
    organizer_artifact_location: str = "mlruns-organizers"
    # One participants' experiment per team, e.g. "{competition}/{id}/{team}": needed when the
    # tracking server is shared with participants under MLflow's basic-auth app
    # (`competition tracking-users` gives each team a user that can use only its own);
    # null: one participants' experiment (`experiment_name`) for every team.
    team_experiment_name: str | None = None
    # Seconds a writer waits for the file lock of a SQLite tracking store (one writer at a
    # time across processes, so that concurrent submissions lose no run).
    lock_seconds: PositiveFloat = 120

    @field_validator("team_experiment_name")
    @classmethod
    def _names_the_team(cls, value: str | None) -> str | None:
        if value is not None and "{team}" not in value:
            raise ValueError(f"{value!r} must contain {{team}} (e.g. "
                             "\"{competition}/{id}/{team}\")")
        return value

    @field_validator("experiment_name", "team_experiment_name")
    @classmethod
    def _names_the_id(cls, value: str | None) -> str | None:
        # Without the id, two competitions of one name would share experiments and see each
        # other's runs (issue 28); experiments made under an old template stay where they are.
        if value is not None and "{id}" not in value:
            raise ValueError(f"{value!r} must contain {{id}}, the competition's id (e.g. "
                             "\"{competition}/{id}/{audience}\"); experiments of the old "
                             "name stay as they are, new runs go to the new one")
        return value


# --- course.yaml --------------------------------------------------------------------------

class CourseConfig(BaseModel):
    """`course.yaml` in a course folder (`competition serve COURSE_DIR`): the course
    organizer's credential and what the portal's "new competition" form may read. Written
    by `competition organizer-token --course COURSE_DIR`; `sources` and the limits are the
    server's owner's to edit (a participant or organizer on the web can never widen them)."""

    model_config = STRICT
    # SHA-256 of the course organizer's token (the token itself is printed once, never kept).
    organizer_token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Folders whose subfolders the form may name as a source (symlinks resolved; nothing
    # outside them is ever read; a relative one is under the course folder). Empty: only
    # uploaded zips.
    sources: list[Path] = Field(default_factory=list)
    # An uploaded source zip: its size as sent, its members, and their unpacked total.
    max_source_upload_mb: PositiveFloat = 2048
    max_source_members: PositiveInt = 100_000
    max_source_unpacked_mb: PositiveFloat = 8192

    def to_yaml(self) -> bytes:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False).encode()
