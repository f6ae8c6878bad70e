"""A task added by a package of its own: the toy task in tests/plugin, registered by an entry
point on the path, goes through prepare -> submit -> board -> MLflow -> `competition run` ->
`competition cv` -> ensemble (greedy on the out-of-fold maps) with no change to the harness,
and adds commands of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PLUGIN = Path(__file__).resolve().parent / "plugin"


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python finds the toy package and its entry point (as an installed
    distribution would declare it), with MLflow logging into stores of the test's own."""
    root = tmp_path_factory.mktemp("plugin")
    site = root / "site"
    shutil.copytree(PLUGIN / "toy_task", site / "toy_task")
    info = site / "toy_task-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[competition.tasks]\ntoy = toy_task:ToyTask\n"
                                           "[competition.commands]\n"
                                           "toy = toy_task.commands:app\n")
    (root / "mlflow.yaml").write_text(
        f"tracking_uri: sqlite:///{root / 'mlflow.db'}\n"
        f"organizer_tracking_uri: sqlite:///{root / 'mlflow-organizers.db'}\n"
        f"artifact_location: {root / 'mlruns'}\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")]), "COMPETITION_TRACKING": "on",
        "COMPETITION_MLFLOW_CONFIG": str(root / "mlflow.yaml"), "ROOT": str(root)}


def cli(env: dict[str, str], *args: str | Path, expect: int = 0, stderr: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "competition", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=env["ROOT"])
    assert done.returncode == expect, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout + (done.stderr if stderr else "")


def test_a_toy_task_package_runs_the_whole_loop(toy_env):
    root = Path(toy_env["ROOT"])
    assert "toy" in cli(toy_env, "tasks") and "demo-toy" in cli(toy_env, "tasks")
    comp = root / "toy"
    cli(toy_env, "prepare", "demo-toy", "--out", comp)
    assert "valid toy submission (10 values)" in cli(
        toy_env, "validate", comp, comp / "public" / "sample_submission.csv")
    # The task's own commands, under its name.
    assert "toy" in cli(toy_env, "--help")
    assert cli(toy_env, "toy", "line", comp).startswith("y = 2.")  # y = 2x + 1 + noise
    assert "30 training items" in cli(toy_env, "toy", "count", comp)

    submitted = json.loads(cli(toy_env, "submit", comp, comp / "public" / "sample_submission.csv",
                               "--team", "zeros", "--json"))
    assert submitted["status"] == "scored" and submitted["public_score"] > 5

    first = cli(toy_env, "run", comp, PLUGIN / "toy_entry")
    second = cli(toy_env, "run", comp, PLUGIN / "toy_entry", "--set", "slope_only=true",
                 "--team", "slope")
    runs = [line.split()[2] for line in (first + second).splitlines()
            if line.startswith("MLflow run ")]
    assert len(runs) == 2
    board = json.loads(cli(toy_env, "leaderboard", comp, "--json"))
    # Lower is better: the fitted lines beat the zeros.
    assert [e["team"] for e in board][-1] == "zeros"
    assert {"baseline-toy_entry", "slope"} <= {e["team"] for e in board}

    cli(toy_env, "ensemble", comp, *runs, "--method", "mean")
    # Greedy chooses on out-of-fold predictions: each member's entry and configuration
    # cross-validated (the toy task's cv_items, take, inputs_of and write_solution).
    folders = [json.loads(cli(toy_env, "cv", comp, PLUGIN / "toy_entry", "--folds", "3",
                              *extra, "--json", stderr=False))["out_dir"]
               for extra in ([], ["--set", "slope_only=true"])]
    assert "run `competition cv DIR ENTRY` for each member" in cli(
        toy_env, "ensemble", comp, *runs, "--method", "greedy", expect=2)
    out = cli(toy_env, "ensemble", comp, *runs, "--method", "greedy", "--team", "greedy",
              "--cv", folders[0], "--cv", folders[1])
    assert "greedy out-of-fold scores by round" in out
    board = {e["team"]: e for e in json.loads(cli(toy_env, "leaderboard", comp, "--json"))}
    assert board["greedy"]["score"] <= max(board["baseline-toy_entry"]["score"],
                                           board["slope"]["score"])

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    competition_id = yaml.safe_load((comp / "competition.yaml").read_text())["id"]
    experiment = client.get_experiment_by_name(f"demo-toy/{competition_id}/participants")
    kinds = [r.data.tags["kind"] for r in client.search_runs([experiment.experiment_id])]
    assert kinds.count("training") == 2 and kinds.count("ensemble") == 2
    assert kinds.count("cv") == 2 * (1 + 3)  # a parent run and a child per fold
    assert kinds.count("submission") == len(board)  # one submission a team, logged once


def test_entries_are_refused_for_tasks_they_do_not_declare(toy_env, tmp_path):
    root = Path(toy_env["ROOT"])
    comp = root / "toy-refusals"
    cli(toy_env, "prepare", "demo-toy", "--out", comp)
    unet = Path(__file__).resolve().parents[1] / "submissions" / "unet"
    out = cli(toy_env, "run", comp, unet, expect=2)
    assert "supports the task(s) nuclei, em" in out and "task is toy" in out
