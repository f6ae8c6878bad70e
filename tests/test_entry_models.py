"""The entry protocol for carrying a fitted model (`save(model, folder)`, `load(task, folder,
config)`): a loaded model predicts what the fitted one predicts, and `competition run` keeps
the model folder `load` reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from competition.board.prepared import PreparedCompetition
from competition.entries import load_entry, resolve_config

REPO = Path(__file__).resolve().parents[1]


def same_predictions(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(
        np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("name", ["threshold", "unet", "multiarm_unet"])
def test_a_loaded_model_predicts_what_the_fitted_one_predicts(demo_dirs, tmp_path, name):
    folder = REPO / "submissions" / name
    comp = PreparedCompetition.open(demo_dirs["demo-nuclei"])
    task, entry = comp.task, load_entry(folder)
    config = resolve_config(folder, task.name, folder / "smoke.yaml")
    fitted = entry.fit(task, task.load_train(comp.public_dir), config)
    entry.save(fitted, tmp_path / "model")
    loaded = entry.load(task, tmp_path / "model", config)
    inputs = task.load_inputs(comp.public_dir, None)
    assert same_predictions(entry.predict(task, fitted, inputs, config),
                            entry.predict(task, loaded, inputs, config))
    if name == "threshold":
        assert loaded == fitted  # the same dict fit returns
    else:
        maps = entry.probabilities(task, fitted, inputs, config)
        again = entry.probabilities(task, loaded, inputs, config)
        assert all(np.allclose(maps[k], again[k], atol=1e-6) for k in maps)
        assert sorted(p.name for p in (tmp_path / "model").iterdir()) == \
            ["model.keras", "trained.json"]


def test_run_keeps_the_folder_that_load_reads(demo_dirs, tmp_path):
    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    folder = REPO / "submissions" / "threshold"
    record = run(comp, folder, folder / "smoke.yaml", submit=False)
    model_dir = Path(record["submission"]).parent / "model"
    loaded = load_entry(folder).load(PreparedCompetition.open(comp).task, model_dir, {})
    assert set(loaded["settings"]) and all("otsu_fraction" in s
                                          for s in loaded["settings"].values())
