"""Late submissions (issue 28, item 5; Kaggle's late submissions): under the rule
`late_submissions` a submission made after the deadline is taken under the same limits,
scored, marked late and shown on the late board, and never ranked: not on the public or
private board, not in the grades, never a final selection. Without the rule the deadline
refuses it (403 on the portal)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
import yaml

from competition.board import leaderboard
from competition.board.context import Closed, LimitReached, RuleError
from competition.board.late import late_board
from competition.board.status import Status
from competition.board.store.schema import submissions
from competition.configs import RulesConfig, parse
from competition.errors import ConfigError
from competition.interfaces.web.exports import grades_csv
from tests.test_bad_input import nuclei_valid, run_cli
from tests.test_board_rules import Clock, ForcedScorer, board_of, count
from tests.test_store import make_comp, variant
from tests.test_web import Portal
from tests.test_web_security import edit_rules

DEADLINE = dt.datetime(2026, 11, 22, 12, 0)
BEFORE, AFTER = DEADLINE - dt.timedelta(hours=3), DEADLINE + dt.timedelta(hours=1)


def perfect(comp, tmp_path):
    return variant(comp, tmp_path, 0, perfect=True)


def test_the_rule_is_read_and_checked_like_the_others():
    assert RulesConfig().late_submissions is False
    assert parse(RulesConfig, {"late_submissions": True}, "x").late_submissions is True
    with pytest.raises(ConfigError, match="late_submissions"):
        parse(RulesConfig, {"late_submissions": "sometimes"}, "competition.yaml")
    with pytest.raises(ConfigError, match="did you mean late_submissions"):
        parse(RulesConfig, {"late_submission": True}, "competition.yaml")


def test_a_late_submission_is_scored_shown_late_and_never_ranked(demo_dirs, tmp_path,
                                                                  store_url):
    comp = make_comp(demo_dirs, tmp_path, deadline=DEADLINE.isoformat() + "Z",
                     late_submissions=True, daily_limit=2)
    clock = Clock(BEFORE)
    board = board_of(comp, store_url, clock)
    on_time = board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    board.submissions.submit(variant(comp, tmp_path, 1), "bats")
    assert on_time.status == "scored" and not on_time.late
    assert board.selections.select(on_time.id, "owls") == [on_time.id]
    clock.set(AFTER)
    late = board.submissions.submit(perfect(comp, tmp_path), "owls")
    # Scored through the normal path, with both scores, and marked late.
    assert late.status == "scored" and late.late and late.public_score == 1.0
    assert late.private_score == 1.0 and late.public_score > on_time.public_score
    assert [o.late for o in board.submissions.of_team("owls")] == [False, True]
    assert board.submissions.outcome_of(late.id, "owls").late
    # Never ranked: the boards and the grades keep the team's on-time submission.
    public = {e.team: e.submission_id for e in leaderboard.public_board(board)}
    private = {e.team: e for e in leaderboard.private_board(board)}
    assert public == {"owls": on_time.id, "bats": on_time.id + 1}
    assert private["owls"].submission_id == on_time.id
    assert late.id not in private["owls"].selections
    assert all(e.entries == 1 for e in leaderboard.public_board(board))
    grades = grades_csv(board).splitlines()
    assert len(grades) == 3 and not any(f",{late.id}," in line for line in grades)
    with pytest.raises(RuleError, match="frozen"):  # never a final selection
        board.selections.select(late.id, "owls")
    # The late board: the late submission alone, with its public and private scores.
    [entry] = late_board(board)
    assert (entry.team, entry.submission_id, entry.public_score, entry.private_score) == \
        ("owls", late.id, 1.0, 1.0)
    assert entry.as_json(show_private=True)["private_score"] == 1.0
    assert "private_score" not in entry.as_json(show_private=False)
    # The daily limit holds after the deadline too (Kaggle's): owls used 2 today.
    with pytest.raises(LimitReached, match="used its 2 submissions"):
        board.submissions.submit(variant(comp, tmp_path, 2), "owls")
    assert board.submissions.submit(variant(comp, tmp_path, 3), "bats").late


def test_lateness_follows_the_deadline_in_force(demo_dirs, tmp_path):
    """Lateness is read from the submission's time and the deadline in force (documented):
    moving the deadline later than a late submission brings it onto the boards."""
    comp = make_comp(demo_dirs, tmp_path, deadline=DEADLINE.isoformat() + "Z",
                     late_submissions=True)
    board = board_of(comp, None, Clock(AFTER))
    late = board.submissions.submit(perfect(comp, tmp_path), "owls")
    assert leaderboard.public_board(board) == [] and len(late_board(board)) == 1
    config = yaml.safe_load((comp / "competition.yaml").read_text())
    config["rules"]["deadline"] = (AFTER + dt.timedelta(days=1)).isoformat() + "Z"
    (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    reopened = board_of(comp, None, Clock(AFTER))
    assert [e.submission_id for e in leaderboard.public_board(reopened)] == [late.id]
    assert late_board(reopened) == []
    assert not reopened.submissions.of_team("owls")[0].late


def test_without_the_rule_a_deadline_moved_earlier_drops_nothing(demo_dirs, tmp_path):
    """Without the rule nothing is late: a submission taken on time stays on the boards when
    the organizer later moves the deadline before it (closing the competition early)."""
    later = (AFTER + dt.timedelta(days=1)).isoformat() + "Z"
    comp = make_comp(demo_dirs, tmp_path, deadline=later)
    board = board_of(comp, None, Clock(AFTER))
    made = board.submissions.submit(perfect(comp, tmp_path), "owls")
    config = yaml.safe_load((comp / "competition.yaml").read_text())
    config["rules"]["deadline"] = DEADLINE.isoformat() + "Z"
    (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    closed = board_of(comp, None, Clock(AFTER))
    assert [e.submission_id for e in leaderboard.public_board(closed)] == [made.id]
    assert [e.submission_id for e in leaderboard.private_board(closed)] == [made.id]
    assert late_board(closed) == [] and not closed.submissions.of_team("owls")[0].late
    with pytest.raises(Closed):
        closed.submissions.submit(variant(comp, tmp_path, 1), "owls")


def test_without_the_rule_the_deadline_refuses(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, deadline=DEADLINE.isoformat() + "Z")
    board = board_of(comp, store_url, Clock(AFTER))
    with pytest.raises(Closed, match="closed at 2026-11-22T12:00:00Z; no more submissions"):
        board.submissions.submit(perfect(comp, tmp_path), "owls")
    assert count(board, submissions) == 0 and late_board(board) == []


def test_a_failed_submission_is_retried_after_the_deadline_only_if_late(demo_dirs, tmp_path):
    comp = make_comp(demo_dirs, tmp_path, deadline=DEADLINE.isoformat() + "Z",
                     late_submissions=True)
    clock, scorer = Clock(BEFORE), ForcedScorer()
    board = board_of(comp, None, clock, scorer)
    scorer.force = Status.FAILED
    on_time = board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    clock.set(AFTER)
    late = board.submissions.submit(variant(comp, tmp_path, 1), "owls")
    assert on_time.status == late.status == "failed"
    scorer.force = None
    with pytest.raises(Closed):  # it would reach the boards after the deadline
        board.submissions.retry(on_time.id, "owls")
    retried = board.submissions.retry(late.id, "owls")
    assert retried.status == "scored" and retried.late
    assert [e.submission_id for e in late_board(board)] == [late.id]


def test_the_cli_submits_late_and_shows_the_late_board(demo_dirs, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # tables unwrapped
    comp = make_comp(demo_dirs, tmp_path, deadline="2020-01-01T00:00:00Z",
                     late_submissions=True)
    path = tmp_path / "perfect.csv"
    path.write_text(nuclei_valid(comp))
    code, out, err = run_cli(["submit", comp, path, "--team", "owls"], capsys)
    assert code == 0, err
    assert "late submission" in out and "--late" in out
    code, out, _ = run_cli(["submissions", comp, "--team", "owls", "--json"], capsys)
    [row] = json.loads(out)
    assert row["late"] is True and row["private_score"] == 1.0
    code, out, _ = run_cli(["submissions", comp, "--team", "owls"], capsys)
    assert "scored (late)" in out
    for args in (["leaderboard", comp, "--json"], ["leaderboard", comp, "--private", "--json"]):
        code, out, _ = run_cli(args, capsys)
        assert code == 0 and json.loads(out) == [], args
    code, out, _ = run_cli(["leaderboard", comp, "--late", "--json"], capsys)
    [entry] = json.loads(out)
    assert entry["team"] == "owls" and entry["public_score"] == entry["private_score"] == 1.0
    assert "rank" not in entry
    code, out, _ = run_cli(["leaderboard", comp, "--late"], capsys)
    assert code == 0 and "Late submissions" in out and "owls" in out
    code, _, err = run_cli(["leaderboard", comp, "--late", "--private"], capsys)
    assert code != 0 and "not both" in err
    code, out, _ = run_cli(["info", comp], capsys)
    assert "late_submissions: True" in out


@pytest.fixture
def late_portal(demo_dirs, tmp_path) -> Portal:
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    return Portal(root, daily_limit=3, deadline="2020-01-01T00:00:00Z")


def test_the_portal_takes_late_submissions_only_under_the_rule(late_portal, tmp_path):
    p = late_portal
    owls = p.auth("owls")
    # On time: made before the deadline (a board of the same store, with its own clock).
    early = board_of(p.root, None, Clock(dt.datetime(2019, 12, 31, 12, 0)))
    on_time_id = early.submissions.submit(variant(p.root, tmp_path, 0), "owls").id
    assert "Late submissions: not taken" in p.client.get("/", headers=owls).text
    refused = p.submit("owls", p.sample)
    assert refused.status_code == 403 and "closed at 2020-01-01" in refused.json()["detail"]
    edit_rules(p.root, late_submissions=True)
    late = p.submit("owls", nuclei_valid(p.root).encode())
    body = late.json()
    assert late.status_code == 201 and body["late"] is True and body["private_score"] == 1.0
    # Not ranked: the boards and the grades keep owls's on-time submission.
    for url in ("/api/leaderboard", "/api/leaderboard/private"):
        entries = p.client.get(url, headers=owls).json()
        assert [(e["team"], e["submission_id"]) for e in entries] == [("owls", on_time_id)]
    grades = p.client.get("/api/organizer/grades.csv", headers=p.auth("organizer")).text
    assert grades.splitlines()[1].split(",")[3] == str(on_time_id)
    selected = p.client.post(f"/api/submissions/{body['id']}/select", headers=owls)
    assert selected.status_code == 400
    # The late board, to anyone signed in; its page; the team's own list marks it.
    assert p.client.get("/api/leaderboard/late").status_code == 401
    [entry] = p.client.get("/api/leaderboard/late", headers=p.auth("bats")).json()
    assert (entry["team"], entry["submission_id"], entry["private_score"]) == \
        ("owls", body["id"], 1.0)
    page = p.client.get("/leaderboard/late", headers=owls)
    assert page.status_code == 200 and 'id="late-board"' in page.text and "owls" in page.text
    listing = p.client.get("/api/submissions", headers=owls).json()
    assert [r["late"] for r in listing] == [False, True]
    mine = p.client.get("/submissions", headers=owls).text
    assert mine.count('class="badge late"') == 1
    home = p.client.get("/", headers=owls).text
    assert "Late submissions: taken after the deadline" in home
    assert 'href="/leaderboard/late"' in home
