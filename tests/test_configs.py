"""Configuration files are Pydantic models that forbid unknown keys: a misspelt key in
competition.yaml, an entry's configuration or mlflow.yaml is an error naming the file, the key
and the closest valid key, never a setting silently ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from competition.board.prepared import PreparedCompetition
from competition.entries import resolve_config, supported_tasks
from competition.errors import CompetitionError, ConfigError
from competition.tracking.config import load_config
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]
UNET = REPO / "submissions" / "unet"


def edited_competition(demo_dirs, tmp_path, edit) -> Path:
    comp = Path(shutil.copytree(demo_dirs["demo-em"], tmp_path / "comp"))
    doc = yaml.safe_load((comp / "competition.yaml").read_text())
    edit(doc)
    (comp / "competition.yaml").write_text(yaml.safe_dump(doc))
    return comp


def test_misspelt_competition_key_names_file_key_and_closest(demo_dirs, tmp_path, capsys):
    comp = edited_competition(demo_dirs, tmp_path,
                              lambda d: d["rules"].update(daly_limit=3))
    code, out, err = run_cli(["info", comp], capsys)
    assert code == 2
    assert f"{comp / 'competition.yaml'}: unknown key rules.daly_limit (did you mean " \
           "rules.daily_limit?)" in err.replace("\n", "")
    assert "Traceback" not in out + err


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(titel="x"), "unknown key titel (did you mean title?)"),
    (lambda d: d["rules"].update(daily_limit=0), "rules.daily_limit: Input should be greater "
                                                 "than 0"),
    (lambda d: d["rules"].update(deadline="next week"), "rules.deadline: 'next week' is not "
                                                        "an ISO date-time"),
    (lambda d: d["rules"].update(score_direction="minimize"),
     "rules.score_direction is no longer used: the task sets the score direction"),
    (lambda d: d.update(task="no-such-task"), "unknown task 'no-such-task'"),
])
def test_competition_yaml_errors_are_clear(demo_dirs, tmp_path, edit, fragment):
    comp = edited_competition(demo_dirs, tmp_path, edit)
    with pytest.raises(CompetitionError) as raised:
        PreparedCompetition.open(comp)
    assert fragment in str(raised.value)


def test_a_valid_edit_is_read(demo_dirs, tmp_path):
    comp = edited_competition(demo_dirs, tmp_path, lambda d: d["rules"].update(
        daily_limit=9, deadline="2030-01-02T03:04:05+02:00"))
    rules = PreparedCompetition.open(comp).rules
    assert rules.daily_limit == 9
    assert rules.deadline.isoformat() == "2030-01-02T01:04:05"  # naive UTC


def test_misspelt_entry_keys_name_the_closest(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("epohcs: 3\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: unknown key epohcs \(did you mean "
                                          r"epochs\?\)"):
        resolve_config(UNET, "nuclei", config)
    config.write_text("nucleii:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key nucleii \(did you mean nuclei\?\)"):
        resolve_config(UNET, "nuclei", config)
    config.write_text("em:\n  epohcs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key em.epohcs \(did you mean "
                                          r"em.epochs\?\)"):
        resolve_config(UNET, "nuclei", config)
    with pytest.raises(ConfigError, match=r"--set learning_rat=0.1: unknown key learning_rat "
                                          r"\(did you mean learning_rate\?\)"):
        resolve_config(UNET, "nuclei", None, ["learning_rat=0.1"])


def test_entry_settings_merge_in_order(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("depth: 3\nnuclei:\n  epochs: 2\nem:\n  epochs: 7\n")
    settings = resolve_config(UNET, "nuclei", config, ["em.epochs=9", "nuclei.min_size=4",
                                                       "base_filters=8"])
    assert settings["depth"] == 3 and settings["epochs"] == 2
    assert settings["min_size"] == 4 and settings["base_filters"] == 8
    assert resolve_config(UNET, "em", config, ["em.epochs=9"])["epochs"] == 9


def test_misspelt_mlflow_key_is_an_error(tmp_path):
    path = tmp_path / "mlflow.yaml"
    path.write_text("tracking_ur: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match=r"mlflow.yaml: unknown key tracking_ur \(did you "
                                          r"mean tracking_uri\?\)"):
        load_config(path)
    path.write_text("tracking_uri: sqlite:///x.db\n")
    assert load_config(path).tracking_uri == f"sqlite:///{tmp_path / 'x.db'}"


@pytest.mark.parametrize("overlay", sorted(p for p in (REPO / "submissions").glob("*/*.yaml")
                                           if p.name != "config.yaml"),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_overlay_names_only_keys_of_its_entry(overlay):
    """A README command such as `--config submissions/unet_mri/long.yaml` must not fail
    hours later, or at once, on a key its entry does not have."""
    tasks = supported_tasks(overlay.parent)
    doc = yaml.safe_load(overlay.read_text()) or {}
    for task in tasks:
        settings = resolve_config(overlay.parent, task, overlay)
        for key, value in doc.items():
            if key not in tasks:
                assert settings[key] == value, (overlay, key)
