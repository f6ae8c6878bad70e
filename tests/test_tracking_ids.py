"""Tracking that cannot mix (issue 28, item 6): each prepared competition has an id, MLflow
experiments and every run lookup are keyed by it, so two folders of the same kind (same name,
same submission ids, same score events) never skip or mix each other's runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionDirError, ConfigError
from competition.tracking import runs as tracking
from tests.conftest import prepare_with_store
from tests.test_bad_input import run_cli
from tests.test_tracking import EMBEDDED, switch_on
from tests.test_tracking_isolation import configure

KIND = "demo-em"  # the quickest to prepare and score


def sample(comp: PreparedCompetition) -> Path:
    return next(comp.public_dir.glob("sample_submission.*"))


def runs_by_audience(config, comp: PreparedCompetition) -> dict[str, list]:
    return {audience: tracking.Tracker(config, audience).runs(comp.key)
            for audience in tracking.AUDIENCES}


def test_two_folders_of_one_kind_log_each_submission_once_in_their_own_experiment(
        tmp_path, monkeypatch):
    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comps = [PreparedCompetition.open(prepare_with_store(KIND, tmp_path / folder))
             for folder in ("first", "second")]
    assert comps[0].name == comps[1].name and comps[0].key.id != comps[1].key.id
    # The same submission id (1) and score event (1) in both stores: what was mixed before.
    outcomes = [Board(comp).submissions.submit(sample(comp), "team") for comp in comps]
    assert [o.id for o in outcomes] == [1, 1]
    experiments = set()
    for comp, outcome in zip(comps, outcomes, strict=True):
        for audience, runs in runs_by_audience(config, comp).items():
            assert [r.data.tags["submission_id"] for r in runs] == [str(outcome.id)], audience
            [run] = runs
            assert run.data.tags[tracking.ID_TAG] == comp.key.id
            assert run.data.tags["competition"] == comp.name  # the name: shown, not a key
            experiments.add((audience, run.info.experiment_id))
            name = tracking.Tracker(config, audience).client.get_experiment(
                run.info.experiment_id).name
            assert name == config.experiment(comp.key, audience) and comp.key.id in name
        assert not Board(comp).submissions.get(outcome.id)["tracking_pending"]
    assert len(experiments) == 4  # two competitions x two audiences, none shared


def strip_id(comp_dir: Path) -> None:
    path = comp_dir / "competition.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["id"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_competition_without_an_id_gets_one_from_migrate_and_keeps_it(
        tmp_path, monkeypatch, capsys, caplog):
    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    root = prepare_with_store(KIND, tmp_path / "old")
    strip_id(root)  # as prepared before ids
    comp = PreparedCompetition.open(root)
    assert comp.key.id is None
    with pytest.raises(CompetitionDirError, match=r"competition migrate .*old"):
        tracking.Tracker(config).runs(comp.key)
    # A submission is scored and kept; its logging waits (pending), never under a guess.
    with caplog.at_level(logging.WARNING):
        outcome = Board(comp).submissions.submit(sample(comp), "team")
    assert outcome.status == "scored" and "competition migrate" in caplog.text
    assert Board(comp).submissions.get(outcome.id)["tracking_pending"]

    (root / "competition.yaml").write_text("# the organizer's note\n" +
                                           (root / "competition.yaml").read_text())
    code, out, err = run_cli(["migrate", root], capsys)
    assert code == 0, err
    comp = PreparedCompetition.open(root)
    assert comp.key.id and f"competition id {comp.key.id}" in out
    text = (root / "competition.yaml").read_text()
    assert text.startswith("# the organizer's note\n")  # only the id line was added
    code, out, err = run_cli(["migrate", root], capsys)  # once: the id is kept
    assert code == 0 and "competition id" not in out
    assert PreparedCompetition.open(root).key.id == comp.key.id
    assert (root / "competition.yaml").read_text() == text

    # What was owed is logged now, under the id.
    assert Board(comp).submissions.track_pending(outcome.id)
    for audience, runs in runs_by_audience(config, comp).items():
        assert [r.data.tags["submission_id"] for r in runs] == [str(outcome.id)], audience


def test_training_refuses_a_competition_without_an_id_before_it_starts(tmp_path, monkeypatch):
    switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    key = tracking.CompetitionKey(None, "old", "data/old")
    with pytest.raises(CompetitionDirError, match="competition migrate data/old"), \
            tracking.training_run(key, "run", {"kind": "training"}):
        pytest.fail("the body ran")
    monkeypatch.setenv("COMPETITION_TRACKING", "off")  # without tracking, no id is needed
    with tracking.training_run(key, "run", {"kind": "training"}) as run:
        assert not run.active


def test_experiment_names_must_carry_the_id(tmp_path, monkeypatch):
    for key, template in (("experiment_name", "{competition}/{audience}"),
                          ("team_experiment_name", "{competition}/{team}")):
        with pytest.raises(ConfigError, match=r"must contain \{id\}"):
            configure({**EMBEDDED, key: template}, tmp_path, monkeypatch)


def test_the_demo_into_a_fresh_folder_logs_its_submissions(tmp_path, monkeypatch, capsys):
    """The demo reported every submission logged and logged none: a fresh folder's score
    events (1, 2) were found among an earlier demo folder's runs of the same name."""
    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    monkeypatch.setattr("competition.interfaces.demo.synthetic_kinds", lambda: [KIND])
    for folder in ("demo", "fresh"):
        code, out, err = run_cli(["demo", "--out", tmp_path / folder], capsys)
        assert code == 0 and "Every scored submission is logged to MLflow" in out, err
    ids = set()
    for folder in ("demo", "fresh"):
        comp = PreparedCompetition.open(tmp_path / folder / KIND)
        ids.add(comp.key.id)
        for audience, runs in runs_by_audience(config, comp).items():
            assert sorted(r.data.tags["submission_id"] for r in runs) == ["1", "2"], audience
    assert len(ids) == 2
    # Reused as it is: nothing submitted or logged again.
    code, out, err = run_cli(["demo", "--out", tmp_path / "fresh"], capsys)
    assert code == 0 and "reused" in out, err
    comp = PreparedCompetition.open(tmp_path / "fresh" / KIND)
    assert all(len(runs) == 2 for runs in runs_by_audience(config, comp).values())
