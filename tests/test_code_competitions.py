"""Code competitions (issue 32), without running code: `prepare --submission`, the
configuration, the sample entries, and which uploads a competition takes. The sandboxed runs
are in test_code_submissions.py and test_sandbox.py."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from competition import configs
from competition.board.board import Board
from competition.board.context import RuleError
from competition.board.prepared import PreparedCompetition
from competition.board.scoring import Scorer
from competition.entries import load_entry, resolve_config
from competition.errors import ConfigError, SourceDataError
from competition.tasks import get_task
from tests.conftest import prepare_with_store

KINDS = ["demo-nuclei", "demo-em", "demo-landmarks", "demo-mri", "demo-tomography"]


def entry_zip(path: Path, files: dict[str, str], top: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(top + name, text)
    return path


@pytest.fixture(scope="module")
def code_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("code")
    return {kind: prepare_with_store(kind, root / kind, seed=0, submission="code")
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_code_competition_keeps_test_inputs_private(code_dirs, kind):
    comp = PreparedCompetition.open(code_dirs[kind])
    assert comp.config.submission == "code" and comp.takes_code and not comp.takes_files
    for rel, path in comp.test_inputs().items():
        assert not (comp.public_dir / rel).exists(), f"public/{rel} is published"
        assert path == comp.root / "private" / "inputs" / rel and path.exists()
    readme = (comp.public_dir / "README.md").read_text()
    assert "## Code submissions" in readme and "not published" in readme
    assert "competition pack" in readme
    assert {p.name for p in (comp.public_dir / "sample_entry").iterdir()} == \
        {"entry.py", "config.yaml"}
    manifest = (comp.root / "manifest.json").read_text()
    assert "private/inputs/" in manifest and "public/sample_entry/entry.py" in manifest


@pytest.mark.parametrize("kind", KINDS)
def test_sample_entry_writes_a_valid_submission(code_dirs, kind, tmp_path):
    """The published sample entry, run as the harness runs entries (fit on the training data
    less the validation item, predict the test inputs where they are shown to entries),
    gives a file the official scorer scores."""
    comp = PreparedCompetition.open(code_dirs[kind])
    task = comp.task
    view = tmp_path / "public"  # what an entry sees: public/ with the test inputs in place
    view.mkdir()
    for path in comp.public_dir.iterdir():
        os.symlink(path, view / path.name)
    for rel, path in comp.test_inputs().items():
        os.symlink(path, view / rel)
    folder = comp.public_dir / "sample_entry"
    entry, config = load_entry(folder), resolve_config(folder, task.name)
    train, _ = task.hold_out(task.load_train(view), config["seed"])
    inputs = task.load_inputs(view)
    predictions = entry.predict(task, entry.fit(task, train, config), inputs, config)
    path = tmp_path / ("submission" + task.submission_suffix)
    path.write_bytes(task.write_submission(inputs, predictions))
    result = Scorer.load(comp).score(comp.submission(path))
    assert result.public is not None and result.private is not None


def test_both_keeps_inputs_public_and_files_changes_nothing(tmp_path):
    both = PreparedCompetition.open(prepare_with_store("demo-em", tmp_path / "both",
                                                       submission="both"))
    assert both.takes_code and both.takes_files
    assert both.test_inputs() == {"test-volume.tif": both.public_dir / "test-volume.tif"}
    assert (both.public_dir / "sample_entry" / "entry.py").is_file()
    assert not (both.root / "private" / "inputs").exists()
    files = PreparedCompetition.open(prepare_with_store("demo-em", tmp_path / "files"))
    assert files.config.submission == "files" and not files.takes_code
    assert not (files.public_dir / "sample_entry").exists()
    assert "## Code submissions" not in (files.public_dir / "README.md").read_text()


def test_submission_kinds_are_checked(tmp_path):
    with pytest.raises(SourceDataError, match="expected files, code or both"):
        prepare_with_store("demo-em", tmp_path / "x", submission="scripts")
    assert not (tmp_path / "x").exists()


def test_a_task_without_test_inputs_cannot_take_code(tmp_path, monkeypatch):
    task = get_task("em")
    monkeypatch.setattr(type(task), "test_inputs", ())
    with pytest.raises(SourceDataError, match="names no test inputs"):
        prepare_with_store("demo-em", tmp_path / "x", submission="code")


def test_code_settings_are_checked(tmp_path):
    base = {"name": "x", "task": "em", "files": {"solution": "private/solution.csv"}}
    parsed = configs.parse(configs.CompetitionConfig,
                           {**base, "submission": "code", "code": {"wall_seconds": 60}}, "c")
    assert parsed.code.wall_seconds == 60 and parsed.code.sandbox == "bwrap"
    with pytest.raises(ConfigError, match=r"code\.wall_secs \(did you mean code\.wall_seconds"):
        configs.parse(configs.CompetitionConfig, {**base, "code": {"wall_secs": 60}}, "c")
    with pytest.raises(ConfigError, match="submission"):
        configs.parse(configs.CompetitionConfig, {**base, "submission": "scripts"}, "c")
    with pytest.raises(ConfigError, match="code.memory_mb"):
        configs.parse(configs.CompetitionConfig, {**base, "code": {"memory_mb": 0}}, "c")
    with pytest.raises(ConfigError, match="code.sandbox"):
        configs.parse(configs.CompetitionConfig, {**base, "code": {"sandbox": "docker"}}, "c")


def test_each_competition_takes_only_its_kind_of_upload(code_dirs, tmp_path):
    """A prediction file to a code competition and an entry's zip to a file competition are
    refused before anything is stored; an MRI prediction zip is not mistaken for code."""
    code_board = Board(PreparedCompetition.open(code_dirs["demo-em"]))
    sample = code_board.comp.public_dir / "sample_submission.tif"
    with pytest.raises(RuleError, match="takes a zip of an entry folder"):
        code_board.submissions.submit(sample, "owls")
    files_dir = prepare_with_store("demo-em", tmp_path / "files")
    files_board = Board(PreparedCompetition.open(files_dir))
    zipped = entry_zip(tmp_path / "entry.zip", {"entry.py": "", "config.yaml": "tasks: [em]"},
                       top="mine/")
    with pytest.raises(RuleError, match="is code .* takes prediction files"):
        files_board.submissions.submit(zipped, "owls")
    for board in (code_board, files_board):
        assert board.submissions.all() == []
        assert not list((board.comp.root / "files").rglob("*.*")) \
            if (board.comp.root / "files").exists() else True
    mri = Board(PreparedCompetition.open(code_dirs["demo-mri"]))
    assert mri.submissions.suffix_of(zipped) == ".entry.zip"
    prediction = mri.comp.public_dir / "sample_submission.zip"
    with pytest.raises(RuleError, match="is not code"):
        mri.submissions.suffix_of(prediction)
    buffer = io.BytesIO(prediction.read_bytes())
    assert zipfile.is_zipfile(buffer)  # a zip, and still not code
