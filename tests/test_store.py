"""The submission store and its rules, against SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, insert, select

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.context import RuleError
from competition.board.prepared import PreparedCompetition
from competition.board.store.schema import score_history, submissions, teams
from competition.board.submissions import Submissions
from tests.processes import clean_context
from tests.test_bad_input import nuclei_valid, run_cli

REPO = Path(__file__).resolve().parents[1]


def make_comp(demo_dirs, tmp_path: Path, **rules) -> Path:
    comp = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], comp)
    config = yaml.safe_load((comp / "competition.yaml").read_text())
    config["rules"].update(rules)
    (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    return comp


def variant(comp: Path, tmp_path: Path, k: int, perfect: bool = False) -> Path:
    """A valid submission: the perfect one, or the empty sample plus pixel k (distinct)."""
    if perfect:
        path = tmp_path / "perfect.csv"
        path.write_text(nuclei_valid(comp))
        return path
    base = (comp / "public" / "sample_submission.csv").read_text()
    path = tmp_path / f"variant{k}.csv"
    first_id = base.splitlines()[1].split(",")[0]
    path.write_text(base + f"{first_id},{k + 1} 1\n")
    return path


def open_board(comp: Path, url, now=None) -> Board:
    kwargs = {} if now is None else {"now": now}
    return Board(PreparedCompetition.open(comp), url=url, **kwargs)


def test_daily_limit_holds_at_exactly_n(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=3)
    clock = [dt.datetime(2026, 11, 22, 23, 0)]
    board = open_board(comp, store_url, now=lambda: clock[0])
    bad = tmp_path / "bad.csv"
    bad.write_text("nonsense\n")
    for _ in range(2):  # invalid submissions never count
        assert board.submissions.submit(bad, "alpha").status == "invalid"
    outcomes = [board.submissions.submit(variant(comp, tmp_path, k), "alpha") for k in range(3)]
    assert [o.status for o in outcomes] == ["scored"] * 3
    assert [o.remaining_today for o in outcomes] == [2, 1, 0]
    with pytest.raises(RuleError, match="used its 3 submissions"):
        board.submissions.submit(variant(comp, tmp_path, 3), "alpha")
    per_team = board.submissions.submit(variant(comp, tmp_path, 4), "beta")
    assert per_team.status == "scored"  # the limit is per team
    clock[0] = dt.datetime(2026, 11, 23, 0, 0)  # 00:00 UTC: a new day
    assert board.submissions.submit(variant(comp, tmp_path, 5), "alpha").status == "scored"
    statuses = [o.status for o in board.submissions.of_team("alpha")]
    assert statuses == ["invalid", "invalid", "scored", "scored", "scored", "scored"]


def test_duplicate_files_are_reported_not_rescored(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=2)
    board = open_board(comp, store_url)
    first = board.submissions.submit(variant(comp, tmp_path, 0), "alpha")
    again = board.submissions.submit(variant(comp, tmp_path, 0), "alpha")
    assert again.status == "duplicate" and again.duplicate_of == first.id
    assert again.public_score == first.public_score and again.remaining_today == 1
    other_team = board.submissions.submit(variant(comp, tmp_path, 0), "beta")
    assert other_team.status == "scored"  # duplicates are per team


def test_files_are_kept_immutable_and_content_addressed(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path)
    board = open_board(comp, store_url)
    path = variant(comp, tmp_path, 0)
    outcome = board.submissions.submit(path, "alpha")
    row = board.submissions.get(outcome.id)
    kept = comp / row["file_path"]
    assert kept.read_bytes() == path.read_bytes()
    assert row["file_sha256"] in kept.name
    assert oct(kept.stat().st_mode & 0o777) == "0o444"
    path.write_text("changed afterwards\n")
    assert kept.read_bytes() != path.read_bytes()


def test_hidden_scores_stay_out_of_participant_output_before_the_deadline(
        demo_dirs, tmp_path, capsys, monkeypatch, store_url):
    comp = make_comp(demo_dirs, tmp_path, deadline="2099-01-01T00:00:00Z")
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    perfect = tmp_path / "perfect.csv"
    perfect.write_text(nuclei_valid(comp))
    # A submission whose private score differs from its public one, so it is recognisable.
    board = open_board(comp, store_url)
    outcome = board.submissions.submit(variant(comp, tmp_path, 0), "alpha")
    lines = nuclei_valid(comp).splitlines()
    solution = (comp / "private" / "solution.csv").read_text().splitlines()
    private_ids = {r.split(",")[0] for r in solution[1:] if r.endswith("Private")}
    half = lines[0] + "\n" + "\n".join(
        ln if ln.split(",")[0] in private_ids else ln.split(",")[0] + "," for ln in lines[1:])
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(half + "\n")
    code, out, err = run_cli(["submit", comp, mixed, "--team", "beta", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    private = board.submissions.get(result["id"])["private_score"]
    assert private == 1.0 and result["public_score"] == 0.0
    assert "private" not in out.lower()
    for args in (["submissions", comp, "--team", "beta", "--json"],
                 ["submissions", comp, "--team", "beta"],
                 ["leaderboard", comp, "--json"], ["leaderboard", comp],
                 ["submit", comp, tmp_path / "nope.csv", "--team", "beta"],
                 ["submit", comp, mixed, "--team", "beta", "--json"]):
        code, out, err = run_cli(args, capsys)
        assert "private" not in (out + err).lower(), args
        if "--json" in args and code == 0:
            assert "private" not in json.dumps(json.loads(out)).lower()
    # The leaderboard's score for beta is its public 0.0, never the private 1.0.
    code, out, _ = run_cli(["leaderboard", comp, "--json"], capsys)
    assert {e["team"]: e["score"] for e in json.loads(out)}["beta"] == 0.0
    # After the deadline the private scores appear.
    config = yaml.safe_load((comp / "competition.yaml").read_text())
    config["rules"]["deadline"] = "2020-01-01T00:00:00Z"
    (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    code, out, _ = run_cli(["submissions", comp, "--team", "beta", "--json"], capsys)
    assert json.loads(out)[0]["private_score"] == 1.0
    code, _, err = run_cli(["submit", comp, mixed, "--team", "beta"], capsys)
    assert code == 2 and "closed" in err
    assert outcome.status == "scored"


def _submit_in_process(comp, url, path, team, barrier, queue):
    barrier.wait()
    try:
        board = Board(PreparedCompetition.open(comp), url=url)
        outcome = board.submissions.submit(Path(path), team)
        queue.put(("ok", team, outcome.id, outcome.status))
    except RuleError as e:
        queue.put(("refused", team, None, str(e)))
    except Exception as e:  # reported to the test, which fails on it
        queue.put(("error", team, None, f"{type(e).__name__}: {e}"))


def test_fifty_concurrent_processes_lose_and_duplicate_nothing(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=5)
    open_board(comp, store_url)  # create the schema once, as `prepare` users would
    paths = [variant(comp, tmp_path, k) for k in range(50)]
    ctx = clean_context()
    barrier, queue = ctx.Barrier(50), ctx.Queue()
    procs = [ctx.Process(target=_submit_in_process,
                         args=(comp, store_url, paths[k], f"team{k % 5}", barrier, queue))
             for k in range(50)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [r for r in results if r[0] == "error"], results
    accepted = [r for r in results if r[0] == "ok"]
    refused = [r for r in results if r[0] == "refused"]
    assert len(accepted) == 25 and len(refused) == 25
    assert all("used its 5 submissions" in r[3] for r in refused)
    board = open_board(comp, store_url)
    with board.engine.connect() as conn:
        rows = conn.execute(select(submissions.c.id, submissions.c.status, teams.c.name,
                                   submissions.c.file_sha256, submissions.c.file_path)
                            .join(teams, teams.c.id == submissions.c.team_id)).all()
    assert sorted(r.id for r in rows) == sorted(r[2] for r in accepted)  # nothing lost
    assert len({r.file_sha256 for r in rows}) == 25  # nothing duplicated
    for team in (f"team{k}" for k in range(5)):
        assert sum(r.name == team and r.status == "scored" for r in rows) == 5
    assert all((comp / r.file_path).is_file() for r in rows)


def _wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def slow_submit(comp: Path, path: Path, team: str, store_url: str | None,
                env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """A submitting process whose scorer child waits a minute before scoring (the
    `tests.slow_submit` test double), so it can be killed mid-run."""
    env = {**os.environ, **(env or {})}
    if store_url:
        env["COMPETITION_STORE_URL"] = store_url
    return subprocess.Popen([sys.executable, "-m", "tests.slow_submit", str(comp), str(path),
                             team], cwd=REPO, env=env, **popen)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux: /proc)."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def scoring_child(board: Board, submission_id: int, proc: subprocess.Popen) -> int:
    """The pid of the scorer child of the submitting process `proc`, once its job is claimed
    (the forked child comes after the claim)."""
    def child():
        row = board.submissions.get(submission_id)
        return row and row["status"] == "scoring" and (children(proc.pid) or [0])[-1]

    return _wait_for(child)


def test_scorer_killed_mid_run_leaves_a_failed_retryable_submission(
        demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=3)
    board = open_board(comp, store_url)
    before = board.submissions.submit(variant(comp, tmp_path, 0), "alpha")
    earlier = board.submissions.get(before.id)
    proc = slow_submit(comp, variant(comp, tmp_path, 1), "alpha", store_url,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.kill(scoring_child(board, before.id + 1, proc), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "killed by signal 9" in err and "Traceback" not in err
    row = board.submissions.get(before.id + 1)
    assert row["status"] == "failed" and not row["counted"]
    assert board.submissions.get(before.id) == earlier  # the earlier one is intact
    assert board.submissions.get(before.id)["status"] == "scored"
    assert board.submissions.get(before.id)["public_score"] == before.public_score
    retried = board.submissions.retry(before.id + 1, "alpha")
    assert retried.status == "scored" and retried.remaining_today == 1


def test_a_killed_submitting_process_leaves_its_job_to_the_next_claim(demo_dirs, tmp_path,
                                                                     store_url):
    """No PID is looked at: the killed command's job stays claimed until its lease runs out,
    then any claim takes it back and scores it once; its slot was counted once throughout."""
    from competition.board.queue import Queue
    from competition.jobs.job import run_job

    comp = make_comp(demo_dirs, tmp_path, daily_limit=2)
    board = open_board(comp, store_url)
    proc = slow_submit(comp, variant(comp, tmp_path, 1), "alpha", store_url,
                       env={"COMPETITION_LEASE_SECONDS": "2"}, start_new_session=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scoring_child(board, 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the submitting process and its scorer
    proc.wait()
    queue = Queue(board.ctx, "elsewhere:1")
    with board.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(submissions).where(
            submissions.c.counted.is_(True))).scalar_one() == 1
    claim = _wait_for(lambda: queue.claim_one(1), timeout=30)
    assert claim.attempts == 2
    assert run_job(str(comp), store_url, claim) == "recorded"
    row = board.submissions.get(1)
    assert row["status"] == "scored" and row["counted"]
    with board.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(score_history).where(
            score_history.c.submission_id == 1)).scalar_one() == 1
    assert board.submissions.submit(variant(comp, tmp_path, 2), "alpha").remaining_today == 0


def test_rescore_is_atomic_and_reports_changes(demo_dirs, tmp_path, store_url, monkeypatch):
    comp = make_comp(demo_dirs, tmp_path)
    board = open_board(comp, store_url)
    for k in range(3):
        board.submissions.submit(variant(comp, tmp_path, k, perfect=(k == 0)), f"team{k}")

    def snapshot():
        with board.engine.connect() as conn:
            rows = conn.execute(select(submissions).order_by(submissions.c.id)).all()
            history = conn.execute(select(func.count()).select_from(score_history)).scalar()
        return [tuple(r) for r in rows], history

    before = snapshot()
    assert board.rescoring.rescore() == []  # same scorer, same solution: nothing changes
    assert len(snapshot()[0]) == 3 and snapshot()[1] == before[1] + 3
    # Change the hidden solution: every Public image becomes Private.
    solution = comp / "private" / "solution.csv"
    solution.write_text(solution.read_text().replace(",Public", ",Private"))
    before = snapshot()
    calls = {"n": 0}
    original = Submissions.record

    def flaky(self, conn, submission_id, result, reason):
        calls["n"] += 1
        if reason == "rescore" and calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(self, conn, submission_id, result, reason)

    monkeypatch.setattr(Submissions, "record", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        board.rescoring.rescore()
    assert snapshot() == before  # all or nothing
    monkeypatch.setattr(Submissions, "record", original)
    changes = board.rescoring.rescore()
    assert {c["id"] for c in changes} == {1, 2, 3}
    assert all(c["new_public"] is None for c in changes)
    row = board.submissions.get(1)
    assert row["solution_sha256"] == board.comp.solution_sha256()
    assert row["scorer_version"].startswith("competition ")


def test_leaderboards_rank_break_ties_and_select(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, final_selections=1)
    clock = [dt.datetime(2026, 11, 20, 10, 0)]

    def tick():
        clock[0] += dt.timedelta(minutes=1)
        return clock[0]

    board = open_board(comp, store_url, now=tick)
    perfect = variant(comp, tmp_path, 0, perfect=True)
    weak = variant(comp, tmp_path, 1)
    a1 = board.submissions.submit(weak, "alpha")
    b1 = board.submissions.submit(perfect, "beta")  # beta: perfect, first
    c1 = board.submissions.submit(perfect, "gamma")  # gamma: perfect, later: ranks after beta
    board.submissions.submit(variant(comp, tmp_path, 2), "beta")
    ranking = leaderboard.public_board(board)
    assert [(e.rank, e.team) for e in ranking] == [(1, "beta"), (2, "gamma"), (3, "alpha")]
    assert ranking[0].submission_id == b1.id and ranking[1].submission_id == c1.id
    assert ranking[0].entries == 2
    assert ranking[1].indistinguishable_from_leader and not ranking[2].indistinguishable_from_leader
    assert ranking[0].ci_low <= ranking[0].score <= ranking[0].ci_high
    # NaN and missing scores never rank.
    with board.engine.begin() as conn:
        team_id = conn.execute(insert(teams).values(name="nan", created_at=clock[0])
                               ).inserted_primary_key[0]
        conn.execute(insert(submissions).values(
            team_id=team_id, submitted_at=clock[0], file_name="x", file_sha256="0" * 64,
            file_path="x", status="scored", counted=True, public_score=float("nan"),
            private_score=None))
    assert [e.team for e in leaderboard.public_board(board)] == ["beta", "gamma", "alpha"]
    # Private board: beta selects its weak second submission, so gamma moves up, and beta
    # (private 0.0, like alpha) ranks after alpha, whose submission came first.
    board.selections.select(4, "beta")
    with pytest.raises(RuleError, match="already has 1 final"):
        board.selections.select(2, "beta")
    private = leaderboard.private_board(board)
    assert [(e.team, e.public_rank, e.rank_change) for e in private] == [
        ("gamma", 2, 1), ("alpha", 3, 1), ("beta", 1, -2)]
    assert private[2].selections == [4] and private[1].selections == [a1.id]
    bad = tmp_path / "bad.csv"
    bad.write_text("x\n")
    invalid = board.submissions.submit(bad, "alpha")
    with pytest.raises(RuleError, match="only scored"):
        board.selections.select(invalid.id, "alpha")
    with pytest.raises(RuleError, match="no submission"):
        board.selections.select(b1.id, "alpha")  # another team's submission


def test_store_url_from_environment_reaches_the_cli(demo_dirs, tmp_path, capsys, monkeypatch,
                                                    postgres_server):
    comp = make_comp(demo_dirs, tmp_path)
    (comp / "store" / "submissions.sqlite").unlink()  # the store `prepare` made: not used
    url = postgres_server.new_database()
    monkeypatch.setenv("COMPETITION_STORE_URL", url)
    code, out, err = run_cli(["submit", comp, variant(comp, tmp_path, 0), "--team", "a",
                              "--json"], capsys)
    assert code == 0, err
    assert not (comp / "store" / "submissions.sqlite").exists()
    board = open_board(comp, url)
    row = board.submissions.get(json.loads(out)["id"])
    assert row["status"] == "scored" and row["team"] == "a"


def test_teams_have_members(demo_dirs, tmp_path, capsys, store_url, monkeypatch):
    comp = make_comp(demo_dirs, tmp_path)
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    code, out, err = run_cli(["team", "add", comp, "owls", "--member", "ana", "--member",
                              "bo"], capsys)
    assert code == 0, err
    assert "ana, bo" in out
    code, out, _ = run_cli(["team", "add", comp, "owls", "--member", "cy", "--member", "ana"],
                           capsys)
    assert "ana, bo, cy" in out
    board = open_board(comp, store_url)
    assert board.submissions.submit(variant(comp, tmp_path, 0), "owls").status == "scored"
    assert [o.team for o in board.submissions.of_team("owls")] == ["owls"]


@pytest.mark.parametrize("kind", ["demo-em", "demo-landmarks"])
def test_every_task_can_be_submitted_and_ranked(demo_dirs, tmp_path, kind):
    """Scoring in the store's child process works for every task (the EM scorer starts
    processes of its own), and boards with intervals come out for each."""
    comp = tmp_path / kind
    shutil.copytree(demo_dirs[kind], comp)
    board = open_board(comp, None)
    task = board.comp.task
    path = tmp_path / f"day-one{task.submission_suffix}"
    path.write_bytes(task.naive_submission(comp / "public"))
    sample = next((comp / "public").glob("sample_submission.*"))
    good = board.submissions.submit(path, "naive")
    worse = board.submissions.submit(sample, "sample")
    assert good.status == worse.status == "scored", (good.error, worse.error)
    ranking = leaderboard.public_board(board)
    assert [e.team for e in ranking] == ["naive", "sample"]
    assert ranking[0].ci_low <= ranking[0].score <= ranking[0].ci_high
