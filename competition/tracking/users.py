"""Each team its own runs on a shared tracking server: users and permissions of MLflow's
basic-auth app (`mlflow server --app-name basic-auth`), kept through its REST API.

The design, in full:
- the participants' store is an MLflow server started with the basic-auth app,
  `default_permission = NO_PERMISSIONS` and `authenticate_team_user` below as its
  `authorization_function` (`competition ui --auth` starts one so): a user sees no experiment
  unless granted, and only admins create experiments;
- participants' runs go to one experiment per team (`team_experiment_name`, e.g.
  "{competition}/{id}/{team}"), the organizers' to their own store or experiment;
- each participant team gets one MLflow user, named like its experiment, with EDIT (read and
  write runs) on that experiment and nothing else; `sync_team_users` creates the experiment
  and the user (a random password, returned once), and takes back any grant another
  non-admin user holds on the team's experiment or on the organizers';
- the harness logs scored submissions with an admin's credentials, which MLflow's client
  reads from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.

Why no participant may create an experiment: MLflow gives the creator of an experiment MANAGE
on it, and experiment names are first come, first served. A team could otherwise create the
experiment of a team that does not exist yet ("{competition}/{id}/{later team}"), fill it with runs
of its choosing, and have them shown to that team once its user is given the experiment. The
basic-auth app has no setting for this short of its workspaces mode (`--enable-workspaces`, a
change to the whole server); a DENY grant on every experiment would deny the team's own as well
(the wildcard grant and the team's are folded together, and DENY wins). So the refusal is made
where the app authenticates each request. (MLflow's UI then leaves out its change-password and
log-out items, which it shows only with its own function; `competition tracking-users
--reset-password` gives new passwords.) On a server started otherwise (MLflow's own
`authenticate_request_basic_auth`) participants can create experiments again: taking back the
grants on the team's experiment at each sync is then the only defence, and runs written into it
before stay there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from competition.errors import CompetitionError
from competition.tracking.config import CompetitionKey, TrackingConfig
from competition.tracking.runs import Tracker, is_remote

GRANTED = "EDIT"  # read and write runs of the experiment; not delete it or share it
READABLE = ("READ", "USE", "EDIT", "MANAGE")


@dataclass
class TeamUser:
    team: str
    username: str
    experiment_id: str
    password: str | None  # new: created now or reset (shown once); None: unchanged
    revoked: list[str]  # other users whose grants on the team's experiment were taken back


def username(config: TrackingConfig, competition: CompetitionKey, team: str) -> str:
    """A team's MLflow user: the name of its experiment."""
    name = config.experiment(competition, "participants", team)
    if ":" in name or not name.strip():
        raise CompetitionError(f"team {team!r}: its MLflow user name {name!r} may not contain "
                               "':' (HTTP basic authentication splits there)")
    return name


def sync_team_users(config: TrackingConfig, competition: CompetitionKey, teams: list[str], *,
                    reset_passwords: bool = False) -> list[TeamUser]:
    """Make each team's experiment, user and permission as the module docstring says."""
    _check_setup(config)
    auth = _Auth(config.tracking_uri)
    others = {u["username"]: bool(u.get("is_admin")) for u in auth.users()}
    done = []
    for team in teams:
        name = username(config, competition, team)
        experiment_id = Tracker(config, "participants", team).experiment_id(competition)
        password = None
        if name not in others:
            password = secrets.token_urlsafe(18)
            auth.call("/api/2.0/mlflow/users/create", "POST",
                      json={"username": name, "password": password})
            others[name] = False
        elif reset_passwords:
            password = secrets.token_urlsafe(18)
            auth.call("/api/2.0/mlflow/users/update-password", "PATCH",
                      json={"username": name, "password": password})
        auth.grant(name, experiment_id, GRANTED)
        revoked = _take_back(auth, experiment_id, [u for u, admin in others.items()
                                                   if not admin and u != name])
        done.append(TeamUser(team, name, experiment_id, password, revoked))
    if config.organizer_tracking_uri == config.tracking_uri:  # one server for both
        organizers = Tracker(config, "organizers").experiment_id(competition)
        _take_back(auth, organizers, [u for u, admin in others.items() if not admin])
    return done


def authenticate_team_user() -> Any:
    """The basic-auth app's `authorization_function` (see the module docstring): MLflow's
    own basic-auth check, then a 403 to any user but an admin who asks to create an
    experiment (or the UI's demo data, which makes one). Runs in the MLflow server."""
    from flask import jsonify, request
    from mlflow.server import auth
    from mlflow.server.auth.routes import DEMO_GENERATE

    found = auth.authenticate_request_basic_auth()
    username = getattr(found, "username", None)  # None: a 401 challenge to answer as is
    creating = request.method == "POST" and (
        request.path == DEMO_GENERATE or auth.BEFORE_REQUEST_VALIDATORS.get(
            (request.path, request.method)) is auth.validate_can_create_experiment)
    if creating and username and not auth.store.get_user(username).is_admin:
        refusal = jsonify({"error_code": "PERMISSION_DENIED", "message": (
            f"user {username!r} may not create experiments on this server: the organizers "
            "create each team's experiment (`competition tracking-users`); log your runs "
            "to your team's own")})
        refusal.status_code = 403
        return refusal
    return found


def _check_setup(config: TrackingConfig) -> None:
    if not is_remote(config.tracking_uri):
        raise CompetitionError(
            f"the participants' tracking store is {config.tracking_uri}, not a server: team "
            "users live in an MLflow server's basic-auth app (start one with `competition ui "
            "--auth`, then point MLFLOW_TRACKING_URI at it)")
    if not config.team_experiment_name:
        raise CompetitionError("set team_experiment_name in mlflow.yaml (e.g. "
                               "\"{competition}/{id}/{team}\"): a team can be given only its own "
                               "runs if they are in an experiment of its own")
    if not (os.environ.get("MLFLOW_TRACKING_USERNAME")
            and os.environ.get("MLFLOW_TRACKING_PASSWORD")):
        raise CompetitionError("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to "
                               "the tracking server's admin credentials")


def _take_back(auth: _Auth, experiment_id: str, users: list[str]) -> list[str]:
    """Revoke each of `users`' grants on the experiment; refuse if the server's default
    lets a user without a grant read it anyway."""
    revoked = []
    for user in users:
        if auth.permission(user, experiment_id) not in READABLE:
            continue
        # Refused when the user has no grant of its own (the server's default: checked below).
        with contextlib.suppress(CompetitionError):
            auth.revoke(user, experiment_id)
        if auth.permission(user, experiment_id) in READABLE:
            raise CompetitionError(
                f"user {user!r} can still read experiment {experiment_id}: the server's "
                "default_permission lets every user read every experiment; start it with "
                "default_permission = NO_PERMISSIONS (as `competition ui --auth` does)")
        revoked.append(user)
    return revoked


class _Auth:
    """The basic-auth app's REST API, with the credentials MLflow's client uses."""

    def __init__(self, uri: str):
        from mlflow.utils import credentials

        # Typed here: older MLflow releases leave these functions unannotated, newer ones not.
        creds_of: Callable[[str], Any] = credentials.get_default_host_creds
        self.uri = uri
        self.creds = creds_of(uri)

    def call(self, endpoint: str, method: str, **kwargs: Any) -> dict[str, Any]:
        from mlflow.utils import rest_utils

        http_request: Callable[..., Any] = rest_utils.http_request
        response = http_request(
            self.creds, endpoint, method, max_retries=0, **kwargs)
        if response.status_code in (401, 403):
            raise CompetitionError(f"{self.uri}: the admin credentials were refused "
                                   f"({response.status_code} on {endpoint})")
        if response.status_code >= 400:
            raise CompetitionError(f"{self.uri}{endpoint}: {response.status_code} "
                                   f"{response.text[:300]}")
        return response.json() if response.content else {}

    def users(self) -> list[dict[str, Any]]:
        return list(self.call("/api/2.0/mlflow/users/list", "GET").get("users", []))

    def grant(self, user: str, experiment_id: str, permission: str) -> None:
        """Give `user` exactly `permission` on the experiment (a grant that exists is
        replaced: the API refuses a second one)."""
        if self.permission(user, experiment_id) == permission:
            return
        with contextlib.suppress(CompetitionError):
            self.revoke(user, experiment_id)
        self.call("/api/3.0/mlflow/users/permissions/grant", "POST", json={
            "username": user, "resource_type": "experiment", "resource_id": experiment_id,
            "permission": permission})

    def revoke(self, user: str, experiment_id: str) -> None:
        self.call("/api/3.0/mlflow/users/permissions/revoke", "POST", json={
            "username": user, "resource_type": "experiment", "resource_id": experiment_id})

    def permission(self, user: str, experiment_id: str) -> str:
        answer = self.call("/api/3.0/mlflow/users/permissions/get", "GET", params={
            "username": user, "resource_type": "experiment", "resource_id": experiment_id})
        return str(answer.get("permission", ""))
