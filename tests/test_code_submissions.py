"""Code submissions through the board (issue 32): a zip of an entry folder is run in the
sandbox on the hidden test inputs and what it writes is scored through the normal path; the
entry's own failures end `failed` with their cause and count, the harness's do not; the
board shows each run's time and memory; the team alone sees its output."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.context import RuleError
from competition.board.prepared import PreparedCompetition
from competition.sandbox.bwrap import unavailable_reason
from competition.training.pack import pack_entry
from competition.training.run import run
from tests.conftest import REPO, prepare_with_store

REASON = unavailable_reason()
sandboxed = pytest.mark.skipif(REASON is not None, reason=f"bubblewrap: {REASON}")


def with_code(root: Path, **code) -> Path:
    config = yaml.safe_load((root / "competition.yaml").read_text())
    config["code"] = {**config.get("code", {}), **code}
    (root / "competition.yaml").write_text(yaml.safe_dump(config))
    return root


def entry_zip(path: Path, entry_py: str, task: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("entry.py", entry_py)
        z.writestr("config.yaml", f"tasks: [{task}]\nseed: 0\n")
    return path


def smoke_folder(name: str, tmp_path: Path) -> Path:
    """A shipped entry with its smoke settings as its config.yaml (what a participant would
    pack to get the test suite's seconds-long configuration)."""
    folder = tmp_path / name
    shutil.copytree(REPO / "submissions" / name, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for key, value in yaml.safe_load((folder / "smoke.yaml").read_text()).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def packed(folder: Path, out: Path) -> Path:
    return pack_entry(folder, out).out


@pytest.fixture(scope="module")
def em_code(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("em-code")
    return with_code(prepare_with_store("demo-em", root / "em", submission="code"),
                     wall_seconds=20, memory_mb=2048, log_kb=16)


@sandboxed
def test_threshold_as_code_scores_what_competition_run_gives(tmp_path):
    comp_dir = prepare_with_store("demo-nuclei", tmp_path / "nuclei", submission="both")
    folder = smoke_folder("threshold", tmp_path)
    record = run(comp_dir, folder, submit=True)
    board = Board(PreparedCompetition.open(comp_dir))
    ran = board.submissions.get(record["submission_id"])
    outcome = board.submissions.submit(packed(folder, tmp_path / "threshold.zip"), "owls")
    assert outcome.status == "scored", outcome.error
    assert (outcome.public_score, board.submissions.get(outcome.id)["private_score"]) == \
        (ran["public_score"], ran["private_score"])
    written = Path(record["submission"]).read_bytes()
    run_row = outcome.run
    assert run_row is not None and run_row["cause"] is None and run_row["exit_code"] == 0
    assert run_row["wall_seconds"] > 0 and run_row["peak_memory_mb"] > 0
    kept = list((comp_dir / "code_runs" / str(outcome.id) / "out").iterdir())
    assert [p.read_bytes() for p in kept] == [written]
    assert not (comp_dir / "code_runs" / str(outcome.id) / "entry").exists()
    # The board shows the run's time and memory beside the score; a file has none.
    entries = {e.team: e for e in leaderboard.public_board(board)}
    assert entries["owls"].wall_seconds == run_row["wall_seconds"]
    assert entries["owls"].peak_memory_mb == run_row["peak_memory_mb"]
    assert entries["baseline-threshold"].wall_seconds is None
    assert "wall_seconds" not in entries["baseline-threshold"].as_json()


HOSTILE = {
    "time limit": "import time\ntime.sleep(10_000)\n",
    "exit code 1": "import sys\nprint('tracing the bug', file=sys.stderr)\n"
                   "raise SystemExit(1)\n",
    "no output file": "import os\nos._exit(0)\n",
}


@sandboxed
@pytest.mark.parametrize("cause", sorted(HOSTILE))
def test_an_entry_that_fails_ends_failed_with_its_cause_and_counts(em_code, tmp_path, cause):
    board = Board(PreparedCompetition.open(em_code))
    team = f"team-{cause.replace(' ', '-')}"
    zipped = entry_zip(tmp_path / "entry.zip", HOSTILE[cause] + "def fit(*a, **k): pass\n"
                       "def predict(*a, **k): pass\n", "em")
    outcome = board.submissions.submit(zipped, team)
    assert outcome.status == "failed" and outcome.error.startswith(cause), outcome.error
    assert outcome.run is not None and outcome.run["cause"] == cause
    assert outcome.remaining_today == board.rules.daily_limit - 1  # it counted
    if cause == "time limit":
        assert 20 <= outcome.run["wall_seconds"] < 20 + 30
    if cause == "exit code 1":
        assert "tracing the bug" in outcome.run["stderr_tail"]
    with pytest.raises(RuleError, match="submit a corrected entry"):
        board.submissions.retry(outcome.id, team)
    assert leaderboard.public_board(board) == [] or \
        all(e.team != team for e in leaderboard.public_board(board))


@sandboxed
def test_invalid_output_is_the_entrys_failure(em_code, tmp_path):
    board = Board(PreparedCompetition.open(em_code))
    entry = ("import numpy as np\n"
             "def fit(task, train, config, on_epoch=None):\n    return None\n"
             "def predict(task, model, inputs, config):\n"
             "    return np.zeros((1, 8, 8), np.float32)  # one slice, wrong size\n")
    outcome = board.submissions.submit(entry_zip(tmp_path / "e.zip", entry, "em"), "shapes")
    assert outcome.status == "failed" and outcome.error.startswith("invalid output:")
    assert outcome.run["cause"] == "invalid output" and outcome.remaining_today == \
        board.rules.daily_limit - 1


@sandboxed
def test_sample_entry_as_code_and_its_output_to_the_team_only(tmp_path):
    """The published sample entry scores as a code submission; its run's output is in the
    team's view and the API's, never another team's; rescoring scores the run's output
    again without running the entry."""
    from tests.test_web import Portal

    root = with_code(prepare_with_store("demo-nuclei", tmp_path / "comp", submission="code"),
                     wall_seconds=20)
    portal = Portal(root)
    folder = root / "public" / "sample_entry"
    zipped = packed(folder, tmp_path / "sample.zip").read_bytes()
    answer = portal.submit("owls", zipped, "sample.zip")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "scored" and body["run"]["exit_code"] == 0
    assert "output_path" not in body["run"]
    assert portal.client.get(f"/api/submissions/{body['id']}",
                             headers=portal.auth("bats")).status_code == 404
    assert all("run" not in row for row in portal.client.get(
        "/api/submissions", headers=portal.auth("bats")).json())
    board_json = portal.client.get("/api/leaderboard").json()
    assert board_json[0]["wall_seconds"] == body["run"]["wall_seconds"]
    page = portal.client.get("/leaderboard").text
    assert "run time (s)" in page and "peak memory (MB)" in page
    home = portal.client.get("/", headers=portal.auth("owls")).text
    assert 'id="code-limits"' in home and "Wall time: 20 s" in home
    # A hostile entry sleeps through its wall time while the portal keeps answering.
    sleeper = entry_zip(tmp_path / "sleep.zip", HOSTILE["time limit"], "nuclei").read_bytes()
    queued = portal.submit("bats", sleeper, "sleep.zip")
    assert queued.status_code in (201, 202)
    started = time.monotonic()
    while True:
        timed = time.monotonic()
        assert portal.client.get("/api/leaderboard").status_code == 200
        assert time.monotonic() - timed < 2.0
        state = portal.client.get(f"/api/submissions/{queued.json()['id']}",
                                  headers=portal.auth("bats")).json()
        if state["status"] == "failed":
            break
        assert time.monotonic() - started < 20 + 30, state
        time.sleep(0.5)
    assert state["error"].startswith("time limit") and state["run"]["cause"] == "time limit"
    board = Board(PreparedCompetition.open(root))
    changes = board.rescoring.rescore()
    assert changes == []  # same output, same score
    assert board.submissions.get(body["id"])["public_score"] == body["public_score"]


@sandboxed
def test_unet_carrying_its_trained_weights_scores_as_its_run_did(tmp_path):
    """A U-Net trained by a smoke run, packed with its model folder (`competition pack
    --model`): the sandboxed run loads the weights instead of fitting, and scores what
    `competition run` scored with the same model."""
    comp_dir = prepare_with_store("demo-nuclei", tmp_path / "nuclei", submission="both")
    folder = smoke_folder("unet", tmp_path)
    record = run(comp_dir, folder, submit=True)
    model = Path(record["submission"]).parent / "model"
    zipped = pack_entry(folder, tmp_path / "unet.zip", model=model).out
    board = Board(PreparedCompetition.open(comp_dir))
    outcome = board.submissions.submit(zipped, "owls")
    assert outcome.status == "scored", (outcome.error, outcome.run)
    assert outcome.public_score == record["public_score"]
    log = outcome.run["stderr_tail"]
    assert "loading the model the entry carries" in log and "training" not in log, log


@sandboxed
def test_the_cli_submits_code_and_packs_it(em_code, tmp_path, capsys):
    from tests.test_bad_input import run_cli

    folder = em_code / "public" / "sample_entry"
    code, out, _ = run_cli(["pack", folder, "--out", tmp_path / "entry.zip"], capsys)
    assert code == 0 and "packed 2 files" in out
    code, out, err = run_cli(["submit", em_code, tmp_path / "entry.zip", "--team", "cli"],
                             capsys)
    assert code == 0, err
    assert "scored" in out and "run:" in out and "peak memory" in out
    code, out, _ = run_cli(["info", em_code], capsys)
    assert "submission: code" in out and "wall_seconds: 20" in out


@sandboxed
def test_a_runs_leftovers_are_removed_from_the_host(em_code, tmp_path):
    """Red team: whatever an entry writes to /out besides its submission (up to its disk
    limit, or more between two polls) stayed on the host for good, run after run. Only the
    submission file is kept (rescoring reads it); a symlink is removed, not followed."""
    board = Board(PreparedCompetition.open(em_code))
    entry = ("import os\n"
             "os.makedirs('/out/d/e')\n"
             "open('/out/d/e/junk', 'wb').write(b'x' * 4096)\n"
             "open('/out/junk', 'wb').write(b'x' * 4096)\n"
             "os.symlink('/entry/entry.py', '/out/link')\n"
             "os.chmod('/out/d', 0)\n"
             "raise SystemExit(2)\n")
    outcome = board.submissions.submit(entry_zip(tmp_path / "e.zip", entry, "em"), "hoarders")
    assert outcome.status == "failed" and outcome.run["cause"] == "exit code 2"
    out = em_code / "code_runs" / str(outcome.id) / "out"
    assert out.is_dir() and list(out.iterdir()) == []


def test_an_unsandboxed_competition_runs_entries_and_says_so_each_time(tmp_path, caplog):
    """`code.sandbox: none` (the organizer's trusted entries): the entry runs as a plain
    process, without bubblewrap, and is scored; each run logs a warning naming the setting."""
    comp_dir = with_code(prepare_with_store("demo-nuclei", tmp_path / "nuclei",
                                            submission="code"), sandbox="none")
    board = Board(PreparedCompetition.open(comp_dir))
    with caplog.at_level("WARNING", logger="competition.board.code_jobs"):
        outcome = board.submissions.submit(
            packed(smoke_folder("threshold", tmp_path), tmp_path / "t.zip"), "owls")
    assert outcome.status == "scored", outcome.error
    warned = [r.getMessage() for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]
    assert len(warned) == 1 and "code.sandbox: none" in warned[0]
