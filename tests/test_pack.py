"""`competition pack`: an entry folder as a code submission's zip."""

from __future__ import annotations

import random
import shutil
import zipfile
from pathlib import Path

import pytest

from competition.errors import CompetitionError
from competition.training.pack import pack_entry
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]


def entry_copy(tmp_path: Path, name: str = "threshold") -> Path:
    return Path(shutil.copytree(REPO / "submissions" / name, tmp_path / name,
                                ignore=shutil.ignore_patterns("__pycache__")))


def test_packing_threshold_puts_its_files_at_the_top(tmp_path, capsys):
    folder = entry_copy(tmp_path)
    # What a participant's folder collects besides the entry: none of it is packed.
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "entry.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref\n")
    (folder / ".notes").write_text("hidden\n")
    (folder / "model").mkdir()
    (folder / "model" / "model.json").write_text("{}\n")
    (folder / "tools").mkdir()
    (folder / "tools" / "helper.py").write_text("X = 1\n")
    out = tmp_path / "threshold.zip"
    code, printed, err = run_cli(["pack", folder, "--out", out], capsys)
    assert code == 0, err
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert archive.read("entry.py") == (folder / "entry.py").read_bytes()
    assert names == sorted(names)
    assert {"entry.py", "config.yaml", "smoke.yaml", "tools/helper.py"} == set(names)
    assert f"packed {len(names)} files" in printed


def test_the_same_folder_gives_the_same_bytes(tmp_path):
    folder = entry_copy(tmp_path)
    first = pack_entry(folder, tmp_path / "a.zip")
    (folder / "entry.py").touch()  # a newer timestamp changes nothing
    second = pack_entry(folder, tmp_path / "b.zip")
    assert first.size == second.size and first.files == 3
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_a_symlink_is_refused_and_nothing_is_written(tmp_path):
    folder = entry_copy(tmp_path)
    (folder / "weights.h5").symlink_to(folder / "config.yaml")
    with pytest.raises(CompetitionError, match="symlink"):
        pack_entry(folder, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["threshold"]  # no temporary file left


def test_refused_folders_and_limits(tmp_path, capsys):
    with pytest.raises(CompetitionError, match="no entry.py"):
        pack_entry(tmp_path, tmp_path / "out.zip")
    folder = entry_copy(tmp_path)
    (folder / "big.bin").write_bytes(random.Random(0).randbytes(2 << 20))  # incompressible
    code, _, err = run_cli(["pack", folder, "--out", tmp_path / "out.zip", "--max-mb", "1"],
                           capsys)
    assert code == 2 and "upload limit" in err
    assert not (tmp_path / "out.zip").exists()
    with pytest.raises(CompetitionError, match="at most 2"):
        pack_entry(folder, tmp_path / "out.zip", max_files=2)


def test_a_model_is_refused_for_an_entry_without_load(tmp_path, capsys):
    folder = entry_copy(tmp_path)
    source = (folder / "entry.py").read_text()
    (folder / "entry.py").write_text(source.split("\ndef save(")[0])
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}\n")
    code, _, err = run_cli(["pack", folder, "--out", tmp_path / "out.zip", "--model", model],
                           capsys)
    assert code == 2 and "defines no load" in err
    assert not (tmp_path / "out.zip").exists()


def test_packing_unet_with_the_model_of_a_smoke_run(demo_dirs, tmp_path, capsys):
    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    folder = REPO / "submissions" / "unet"
    record = run(comp, folder, folder / "smoke.yaml", submit=False)
    model = Path(record["submission"]).parent / "model"
    out = tmp_path / "unet.zip"
    code, printed, err = run_cli(["pack", folder, "--out", out, "--model", model], capsys)
    assert code == 0, err
    assert "with model/ from" in printed
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
    assert {"entry.py", "config.yaml", "model/model.keras", "model/trained.json"} <= names


def test_a_zip_written_into_the_folder_is_not_packed_into_the_next(tmp_path):
    folder = entry_copy(tmp_path)
    first = pack_entry(folder, folder / "entry.zip")
    again = pack_entry(folder, folder / "entry.zip")
    assert first.names == again.names and "entry.zip" not in again.names


@pytest.mark.parametrize(("source", "found"), [
    ("def load(task, folder, config):\n    pass\n", True),
    ("from mylib import load\n", True),
    ("import mylib as load\n", True),
    ("load = make_loader()\n", True),
    ("def fit():\n    def load():\n        pass\n", False),  # not at the top level
    ("loader = 1\n", False),
])
def test_load_is_found_without_running_the_entry(tmp_path, source, found):
    from competition.entries import defines

    (tmp_path / "entry.py").write_text("raise SystemExit('never run')\n" + source)
    assert defines(tmp_path, "load") is found
