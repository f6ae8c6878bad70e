"""`competition roster import DIR [DIR ...] ROSTER --out SHEET`: one token per student for
every competition of a course."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from tests.test_bad_input import run_cli
from tests.test_roster import sheet_rows, write_roster


@pytest.fixture
def dirs(demo_dirs, tmp_path) -> dict[str, Path]:
    return {"nuclei": Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "c" / "nuclei")),
            "em": Path(shutil.copytree(demo_dirs["demo-em"], tmp_path / "c" / "em"))}


def board(root: Path) -> Board:
    return Board(PreparedCompetition.open(root))


def run(args: list, capsys) -> tuple[int, str, str]:
    return run_cli(["roster", "import", *args], capsys)


ROWS = [{"name": "Ana", "id": "a1", "email": "ana@uni.example", "team": "owls"},
        {"name": "Bo", "id": "b1", "email": "bo@uni.example", "team": "owls"}]


def test_one_token_per_student_valid_everywhere_and_never_rotated(dirs, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", ROWS)
    code, out, err = run([dirs["nuclei"], dirs["em"], roster, "--out", tmp_path / "t1.csv"],
                         capsys)
    assert code == 0, err
    assert "2 new account(s)" in out
    tokens = {r["name"]: r["token"] for r in sheet_rows(tmp_path / "t1.csv")}
    assert len(tokens) == 2
    for root in dirs.values():
        for token in tokens.values():
            assert board(root).teams.who(token) == ("team", "owls")

    # Again, with a newcomer: only the newcomer is on the sheet; nobody's token changes.
    roster = write_roster(tmp_path / "roster.csv", [
        *ROWS, {"name": "Cy", "id": "c1", "email": "cy@uni.example", "team": "bats"}])
    code, out, err = run([tmp_path / "c", roster, "--out", tmp_path / "t2.csv"], capsys)
    assert code == 0, err
    assert [r["name"] for r in sheet_rows(tmp_path / "t2.csv")] == ["Cy"]
    assert "em: 2 existing account(s) unchanged" in out
    cy = sheet_rows(tmp_path / "t2.csv")[0]["token"]
    for root in dirs.values():
        assert board(root).teams.who(cy) == ("team", "bats")
        for token in tokens.values():
            assert board(root).teams.who(token) == ("team", "owls")


def test_a_student_known_to_one_competition_keeps_that_token(dirs, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", ROWS[:1])
    code, _, err = run([dirs["nuclei"], roster, "--out", tmp_path / "t1.csv"], capsys)
    assert code == 0, err
    ana = sheet_rows(tmp_path / "t1.csv")[0]["token"]
    roster = write_roster(tmp_path / "roster.csv", ROWS)
    code, out, err = run([dirs["nuclei"], dirs["em"], roster, "--out", tmp_path / "t2.csv"],
                         capsys)
    assert code == 0, err
    assert [r["name"] for r in sheet_rows(tmp_path / "t2.csv")] == ["Bo"]
    assert "em: new account with the token the student has already: Ana (a1)" in out
    assert board(dirs["em"]).teams.who(ana) == ("team", "owls")
    assert board(dirs["nuclei"]).teams.who(ana) == ("team", "owls")


def test_one_competition_refusing_imports_nothing_anywhere(dirs, tmp_path, capsys):
    # em knows ana@uni.example as another student (id z1): the row for Ana is refused there.
    other = write_roster(tmp_path / "other.csv", [
        {"name": "Zed", "id": "z1", "email": "ana@uni.example", "team": "bats"}])
    assert run([dirs["em"], other, "--out", tmp_path / "t0.csv"], capsys)[0] == 0
    roster = write_roster(tmp_path / "roster.csv", ROWS)
    sheet = tmp_path / "t1.csv"
    code, _, err = run([dirs["nuclei"], dirs["em"], roster, "--out", sheet], capsys)
    assert code != 0 and "nothing changed" in err and "ana@uni.example" in err
    assert not sheet.exists()
    assert board(dirs["nuclei"]).accounts.every() == []
    assert [a["name"] for a in board(dirs["em"]).accounts.every()] == ["Zed"]


def test_arguments_are_checked(dirs, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", ROWS)
    code, _, err = run([roster, "--out", tmp_path / "t.csv"], capsys)
    assert code != 0 and "Missing argument" in err
    code, _, err = run([tmp_path / "nowhere", roster, "--out", tmp_path / "t.csv"], capsys)
    assert code != 0 and "nowhere" in err
