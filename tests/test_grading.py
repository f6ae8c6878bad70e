"""The grade rule (competition.yaml `grading:`): its schema refuses what cannot grade sensibly,
naming the key; the pure rule (competition.board.grading) by each scheme; and the grades
export (portal and `competition grades`) giving each student their team's grade."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from competition.board.board import Board
from competition.board.grading import grades
from competition.board.prepared import PreparedCompetition
from competition.board.roster import read_roster
from competition.configs import CompetitionConfig, GradingConfig, parse
from competition.errors import CompetitionDirError, ConfigError
from tests.test_bad_input import nuclei_valid, run_cli
from tests.test_web import Portal


def rule(**doc) -> GradingConfig:
    return parse(GradingConfig, doc, "competition.yaml: grading")


def refusal(doc: dict) -> str:
    config = {"name": "x", "task": "nuclei", "files": {"solution": "s.csv"}, "grading": doc}
    with pytest.raises(ConfigError) as e:
        parse(CompetitionConfig, config, "competition.yaml")
    return str(e.value)


# --- the schema ---------------------------------------------------------------------------

def test_a_rule_that_cannot_grade_sensibly_is_refused_naming_the_key():
    assert "grading: steps are not monotone: steps.1.min (0.9) must be below steps.0.min " \
        "(0.8); list the best grade first" in refusal(
            {"scheme": "thresholds", "steps": [{"min": 0.8, "grade": "A"},
                                               {"min": 0.9, "grade": "B"}]})
    assert "steps.1.max (0.05) must be above steps.0.max (0.1)" in refusal(
        {"scheme": "thresholds", "steps": [{"max": 0.1, "grade": "A"},
                                           {"max": 0.05, "grade": "B"}]})
    assert "steps.1.top (0.1) must be above steps.0.top (0.5)" in refusal(
        {"scheme": "ranks", "steps": [{"top": 0.5, "grade": "A"}, {"top": 0.1, "grade": "B"}]})
    assert "not both" in refusal({"scheme": "thresholds", "steps": [
        {"min": 0.8, "grade": "A"}, {"max": 0.9, "grade": "B"}]})
    assert "steps.0: a ranks step has one of top and a grade (got min)" in refusal(
        {"scheme": "ranks", "steps": [{"min": 0.1, "grade": "A"}]})
    assert "grading.steps.0.top: Input should be less than or equal to 1" in refusal(
        {"scheme": "ranks", "steps": [{"top": 10, "grade": "A"}]})
    assert "a baseline team is named twice" in refusal(
        {"scheme": "baselines", "steps": [{"beat": "b", "grade": "A"},
                                          {"beat": "b", "grade": "B"}]})
    assert "grading.scheme: Input should be 'thresholds', 'ranks' or 'baselines'" in refusal(
        {"scheme": "curve", "steps": [{"min": 1, "grade": "A"}]})
    assert "unknown key grading.steps.0.grde (did you mean grading.steps.0.grade?)" in refusal(
        {"scheme": "ranks", "steps": [{"top": 0.1, "grde": "A"}]})
    assert "grading.steps: List should have at least 1 item" in refusal(
        {"scheme": "ranks", "steps": []})


def test_grades_are_text_and_no_rule_writes_no_key():
    assert rule(scheme="ranks", steps=[{"top": 1, "grade": 10}], missing=0).steps[0].grade == "10"
    assert b"grading" not in CompetitionConfig(name="x", task="nuclei",
                                               files={"solution": "s"}).to_yaml()


def test_thresholds_follow_the_tasks_score_direction(demo_dirs, tmp_path):
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)  # its score: higher is better
    doc = yaml.safe_load((root / "competition.yaml").read_text())
    doc["grading"] = {"scheme": "thresholds", "steps": [{"max": 0.2, "grade": "A"}]}
    (root / "competition.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CompetitionDirError, match="higher-is-better, so each step bounds it "
                       "with min, not max"):
        PreparedCompetition.open(root)


# --- the rule, pure -----------------------------------------------------------------------

TEAMS = [("a", 0.95), ("b", 0.8), ("c", 0.7), ("d", 0.5)]


def test_thresholds_give_the_first_step_reached():
    letters = rule(scheme="thresholds", steps=[{"min": 0.9, "grade": "A"},
                                               {"min": 0.7, "grade": "B"}], below="F")
    assert grades(letters, TEAMS, {}, True) == {"a": "A", "b": "B", "c": "B", "d": "F"}
    errors = rule(scheme="thresholds", steps=[{"max": 0.6, "grade": "A"}], below="C")
    assert grades(errors, TEAMS, {}, False) == {"a": "C", "b": "C", "c": "C", "d": "A"}


def test_ranks_take_the_top_fraction_rounded_down():
    top = rule(scheme="ranks", steps=[{"top": 0.25, "grade": "A"}, {"top": 0.6, "grade": "B"}],
               below="C")
    assert grades(top, TEAMS, {}, True) == {"a": "A", "b": "B", "c": "C", "d": "C"}
    thirty = [(f"t{k}", 1.0 - k / 100) for k in range(30)]  # 10 % of 30 is 3, float or not
    tenth = grades(rule(scheme="ranks", steps=[{"top": 0.1, "grade": "A"}]), thirty, {}, True)
    assert [t for t, g in tenth.items() if g == "A"] == ["t0", "t1", "t2"]


def test_baselines_must_be_beaten_not_tied():
    beat = rule(scheme="baselines", steps=[{"beat": "strong", "grade": "10"},
                                           {"beat": "simple", "grade": "7"}], below="4")
    scores = {"strong": 0.8, "simple": 0.7}
    assert grades(beat, TEAMS, scores, True) == {"a": "10", "b": "7", "c": "4", "d": "4"}
    assert grades(beat, TEAMS, {"strong": 0.6, "simple": 0.9}, False) == {
        "a": "4", "b": "7", "c": "7", "d": "10"}
    with pytest.raises(ConfigError, match=r"grading.steps.1.beat: the baseline team 'simple' "
                       r"has no private score \(known baselines: strong\)"):
        grades(beat, TEAMS, {"strong": 0.8}, True)
    with pytest.raises(ConfigError, match=r"steps.1.beat \(simple, 0.9\) is not easier to beat "
                       r"than steps.0.beat \(strong, 0.8\)"):
        grades(beat, TEAMS, {"strong": 0.8, "simple": 0.9}, True)


bounds = st.lists(st.floats(-100, 100), min_size=1, max_size=5, unique=True)
scores = st.lists(st.floats(-200, 200), min_size=1, max_size=20)


@given(bounds, scores, st.booleans())
def test_monotone_thresholds_give_monotone_grades(values, team_scores, higher_is_better):
    """A better score never gets a worse grade (grades are numbered best first)."""
    key = "min" if higher_is_better else "max"
    ordered = sorted(values, reverse=higher_is_better)
    config = rule(scheme="thresholds", below=str(len(ordered)),
                  steps=[{key: v, "grade": str(k)} for k, v in enumerate(ordered)])
    ranked = sorted(((f"t{k}", s) for k, s in enumerate(team_scores)),
                    key=lambda t: -t[1] if higher_is_better else t[1])
    got = grades(config, ranked, {}, higher_is_better)
    levels = [int(got[team]) for team, _ in ranked]  # best score first
    assert levels == sorted(levels)


@given(st.lists(st.floats(0.01, 1), min_size=1, max_size=4, unique=True),
       st.integers(1, 60))
def test_rank_grades_never_improve_down_the_board(tops, n):
    config = rule(scheme="ranks", below="9",
                  steps=[{"top": t, "grade": str(k)} for k, t in enumerate(sorted(tops))])
    got = grades(config, [(f"t{k}", float(-k)) for k in range(n)], {}, True)
    levels = [int(got[f"t{k}"]) for k in range(n)]
    assert levels == sorted(levels)


# --- the export ---------------------------------------------------------------------------

def test_each_student_gets_their_teams_grade_on_the_portal_and_the_command_line(
        demo_dirs, tmp_path, capsys):
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    doc = yaml.safe_load((root / "competition.yaml").read_text())
    doc["grading"] = {"scheme": "baselines", "steps": [{"beat": "baseline-sample",
                                                        "grade": 10}],
                      "below": 5, "missing": 0}
    (root / "competition.yaml").write_text(yaml.safe_dump(doc))
    portal = Portal(root)
    board = Board(PreparedCompetition.open(root))
    board.accounts.import_roster(read_roster(
        "name,id,email,team\nAna,a1,,owls\nBo,b1,,owls\nCy,c1,,moths\nDee,d1,,bats\n",
        "r.csv"), "r.csv", lambda issued: None)
    sample = tmp_path / "sample.csv"
    sample.write_bytes(portal.sample)
    assert board.submissions.submit(sample, "baseline-sample", baseline=True).status == "scored"
    assert portal.submit("owls", nuclei_valid(root).encode()).status_code == 201
    assert portal.submit("moths", portal.sample).status_code == 201  # ties: not beaten

    text = portal.client.get("/api/organizer/grades.csv", headers=portal.auth("organizer")).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["rank"], r["team"], r["name"], r["grade"]) for r in rows] == [
        ("1", "owls", "Ana", "10"), ("1", "owls", "Bo", "10"), ("2", "moths", "Cy", "5"),
        ("", "bats", "Dee", "0")]  # no submission: the `missing` grade

    code, out, err = run_cli(["grades", root], capsys)
    assert code == 0 and out == text, err
    code, out, _ = run_cli(["grades", root, "--json"], capsys)
    moths = json.loads(out)[2]
    assert code == 0 and moths["private_score"] == float(rows[2]["private_score"])
    assert {k: moths[k] for k in ("rank", "team", "name", "email", "grade")} == {
        "rank": 2, "team": "moths", "name": "Cy", "email": None, "grade": "5"}
    code, out, _ = run_cli(["grades", root, "--out", tmp_path / "g.csv"], capsys)
    assert code == 0 and (tmp_path / "g.csv").read_text() == text

    # A rule naming a baseline that never scored is a clear refusal, not a wrong grade.
    doc["grading"]["steps"] = [{"beat": "baseline-cnn", "grade": 10}]
    (root / "competition.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = run_cli(["grades", root], capsys)
    assert code == 2 and "'baseline-cnn' has no private score" in err
    # The running portal takes the edited rule from its next request, as it does the rules.
    refused = portal.client.get("/api/organizer/grades.csv", headers=portal.auth("organizer"))
    assert refused.status_code == 400 and "baseline-cnn" in refused.json()["detail"]
