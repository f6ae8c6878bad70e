"""People (issue 28): one account per student from a roster, each with a token of its own that
acts as the student's team; importing again, adding members or moving a student never changes
a token; teams listed, renamed, removed; grades list every student; the store's migration."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.roster import RosterError, read_roster
from competition.board.store import db, migrations
from competition.board.store.schema import accounts
from tests.test_bad_input import run_cli
from tests.test_web import Portal, form_token


@pytest.fixture
def comp(demo_dirs, tmp_path, store_url, monkeypatch) -> Path:
    root = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    return root


def board_of(comp: Path) -> Board:
    return Board(PreparedCompetition.open(comp))


def write_roster(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(rows[0])
    path.write_text(",".join(columns) + "\n" + "".join(
        ",".join(row[c] for c in columns) + "\n" for row in rows))
    return path


def sixty() -> list[dict[str, str]]:
    return [{"name": f"Student {k:02d}", "id": f"s{k:03d}", "email": f"st{k}@uni.example",
             "team": f"team {k // 3}"} for k in range(60)]


def sheet_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def import_roster(comp: Path, roster: Path, sheet: Path, capsys) -> str:
    code, out, err = run_cli(["roster", "import", comp, roster, "--out", sheet], capsys)
    assert code == 0, err
    return out


def test_importing_a_roster_twice_changes_no_token(comp, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", sixty())
    out = import_roster(comp, roster, tmp_path / "tokens.csv", capsys)
    assert "60 new account(s)" in out
    issued = sheet_rows(tmp_path / "tokens.csv")
    assert list(issued[0]) == ["name", "id", "email", "team", "token"]
    assert [(r["name"], r["id"], r["team"]) for r in issued] == [
        (f"Student {k:02d}", f"s{k:03d}", f"team {k // 3}") for k in range(60)]
    assert len({r["token"] for r in issued}) == 60
    assert all(r["token"][0].isalnum() for r in issued)  # never defused into "'-..."
    board = board_of(comp)
    assert all(board.teams.who(r["token"]) == ("team", r["team"]) for r in issued)
    with db.read(board.engine) as conn:  # stored hashed only
        stored = set(conn.execute(select(accounts.c.token_sha256)).scalars())
    assert len(stored) == 60 and not stored & {r["token"] for r in issued}

    # The same roster again: nothing new, nothing changed, no token shown or replaced.
    out = import_roster(comp, roster, tmp_path / "again.csv", capsys)
    assert "0 new account(s)" in out and "60 existing account(s) unchanged" in out
    assert "keep their tokens" in out
    assert sheet_rows(tmp_path / "again.csv") == []
    assert all(board.teams.who(r["token"]) == ("team", r["team"]) for r in issued)

    # A newcomer, a student moved (found by email only), another without a team.
    rows = sixty()
    rows[4]["team"] = "team 9"
    rows.append({"name": "Late Dee", "id": "s999", "email": "dee@uni.example",
                 "team": "team 0"})
    rows.append({"name": "Solo Sam", "id": "s998", "email": "sam@uni.example", "team": ""})
    changed = write_roster(tmp_path / "changed.csv", rows)
    out = import_roster(comp, changed, tmp_path / "late.csv", capsys)
    assert "2 new account(s)" in out
    assert "Student 04 (s004): moved from team 'team 1' to 'team 9'" in out
    late = sheet_rows(tmp_path / "late.csv")
    assert [(r["name"], r["team"]) for r in late] == [("Late Dee", "team 0"),
                                                       ("Solo Sam", "Solo Sam")]
    moved = {r["id"]: r["team"] for r in issued} | {"s004": "team 9"}
    assert all(board.teams.who(r["token"]) == ("team", moved[r["id"]]) for r in issued)
    assert board.teams.who(late[0]["token"]) == ("team", "team 0")
    # A student missing from a roster is kept, and said so.
    out = import_roster(comp, write_roster(tmp_path / "short.csv", rows[1:]),
                        tmp_path / "short-tokens.csv", capsys)
    assert "not in this roster (kept): Student 00 (s000, team team 0)" in out
    assert board.teams.who(issued[0]["token"]) == ("team", "team 0")


def test_a_token_sheet_is_never_overwritten(comp, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv", sixty()[:3])
    sheet = tmp_path / "tokens.csv"
    sheet.write_text("earlier tokens\n")
    code, _, err = run_cli(["roster", "import", comp, roster, "--out", sheet], capsys)
    assert code == 2 and "exists already" in err and "never overwritten" in err
    assert sheet.read_text() == "earlier tokens\n"
    assert board_of(comp).accounts.every() == []  # nothing imported


def test_a_token_sheet_is_never_written_where_the_portal_publishes(comp, tmp_path, capsys):
    """public/ is served to everyone: a sheet there would hand every student's token out."""
    roster = write_roster(tmp_path / "roster.csv", sixty()[:3])
    sheet = Path(comp) / "public" / "tokens.csv"
    code, _, err = run_cli(["roster", "import", comp, roster, "--out", sheet], capsys)
    assert code == 2 and "serves to everyone" in err
    assert not (Path(comp) / "public" / "tokens.csv").exists()
    assert board_of(comp).accounts.every() == []  # nothing imported


def test_bad_rows_are_refused_with_file_line_and_field(comp, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text("Name,E-mail,Student ID,Team,notes\n"
                      "Ana,ana@uni.example,a1,owls,fine\n"
                      ",bo@uni.example,b1,owls,\n"  # 3: no name
                      "Cy,not-an-email,c1,owls,\n"  # 4
                      "Dee,,,owls,\n"  # 5: neither id nor email
                      "Eve,eve@uni.example,a1,bats,\n"  # 6: id of line 2
                      "Fay,fay@uni.example,f1,OWLS,\n"  # 7: look-alike team
                      "Gus,gus@uni.example,g\u200b1,bats,\n"  # 8: invisible character
                      "Hal,hal@uni.example,h1,bats,x,y\n")  # 9: more cells than columns
    code, _, err = run_cli(["roster", "import", comp, roster, "--out", tmp_path / "t.csv"],
                           capsys)
    assert code == 2 and "Traceback" not in err
    text = " ".join(err.split())  # (rich wraps long lines)
    for expected in (f"{roster}:3: name: empty", f"{roster}:4: email: 'not-an-email'",
                     f"{roster}:5: id: a student needs an id or an email",
                     f"{roster}:6: id: 'a1' is also on line 2",
                     f"{roster}:7: team: 'OWLS' looks like 'owls' (line 2)",
                     f"{roster}:8: id:", f"{roster}:9: 6 cells"):
        assert expected in text, expected
    assert not (tmp_path / "t.csv").exists()
    assert board_of(comp).accounts.every() == []
    with pytest.raises(RosterError, match="r.csv:1: name: the header has no `name` column"):
        read_roster("email,team\na@b.example,x\n", "r.csv")
    with pytest.raises(RosterError, match="neither an `email` nor an `id` column"):
        read_roster("name,team\nAna,x\n", "r.csv")


def test_a_row_naming_two_existing_students_is_refused(comp, tmp_path, capsys):
    rows = sixty()[:2]
    import_roster(comp, write_roster(tmp_path / "r.csv", rows), tmp_path / "t.csv", capsys)
    rows[0]["email"] = rows[1]["email"]  # s000's id with s001's email
    code, _, err = run_cli(["roster", "import", comp, write_roster(tmp_path / "r2.csv", rows[:1]),
                            "--out", tmp_path / "t2.csv"], capsys)
    assert code == 2 and f"{tmp_path / 'r2.csv'}:2: id:" in " ".join(err.split())
    assert not (tmp_path / "t2.csv").exists()


def test_adding_a_member_keeps_every_token_working(comp, tmp_path, capsys):
    code, out, err = run_cli(["team", "add", comp, "owls", "--member", "ana"], capsys)
    assert code == 0, err
    [team_token] = [line.split()[1] for line in out.splitlines() if line.startswith("token:")]
    import_roster(comp, write_roster(tmp_path / "r.csv", [
        {"name": "Bo", "email": "bo@uni.example", "team": "owls"},
        {"name": "Cy", "email": "cy@uni.example", "team": "larks"}]), tmp_path / "t.csv",
        capsys)
    bo, cy = sheet_rows(tmp_path / "t.csv")
    # A team of students with their own tokens gets no shared one by the way.
    code, out, err = run_cli(["team", "add", comp, "larks", "--member", "q"], capsys)
    assert code == 0 and "token:" not in out and "their own tokens" in out, err
    assert board_of(comp).teams.who(cy["token"]) == ("team", "larks")
    # The bug of issue 28: adding a late member printed a new token and locked the team out.
    code, out, err = run_cli(["team", "add", comp, "owls", "--member", "dee"], capsys)
    assert code == 0, err
    assert "token:" not in out and "token is unchanged" in out and "ana, dee" in out
    board = board_of(comp)
    assert board.teams.who(team_token) == ("team", "owls")
    assert board.teams.who(bo["token"]) == ("team", "owls")
    # Replacing the team's token is asked for by name, and leaves the students' alone.
    code, out, err = run_cli(["team", "add", comp, "owls", "--new-token"], capsys)
    assert code == 0 and "token:" in out
    assert board.teams.who(team_token) is None
    assert board.teams.who(bo["token"]) == ("team", "owls")


def test_a_students_token_signs_in_and_submits_as_the_team(demo_dirs, tmp_path):
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    portal = Portal(root)
    board = Board(PreparedCompetition.open(root))
    sheet: list = []
    board.accounts.import_roster(read_roster(
        "name,id,team\nAna,a1,owls\nBo,b1,owls\nCy,c1,bats\n", "r.csv"), "r.csv", sheet.extend)
    tokens = {i.name: i.token for i in sheet}
    ana = {"Authorization": f"Bearer {tokens['Ana']}"}
    c = portal.client

    # The API: Ana's token submits as owls; Bo sees it, the team's own token too, Cy does not.
    made = c.post("/api/submissions", params={"wait": 60}, headers=ana,
                  files={"file": ("sub.csv", portal.sample)})
    assert made.status_code == 201, made.text
    assert board.submissions.get(made.json()["id"])["team"] == "owls"
    for who, seen in ((f"Bearer {tokens['Bo']}", 1), (f"Bearer {portal.tokens['owls']}", 1),
                      (f"Bearer {tokens['Cy']}", 0)):
        listing = c.get("/api/submissions", headers={"Authorization": who}).json()
        assert len(listing) == seen
    assert c.get("/api/organizer/submissions", headers=ana).status_code == 403

    # The sign-in page: a session acting as owls.
    login = c.get("/login")
    signed = c.post("/login", data={"token": tokens["Bo"], "csrf_token": form_token(login.text)},
                    follow_redirects=False)
    assert signed.status_code == 303
    page = c.get("/submissions")
    assert page.status_code == 200 and "sub.csv" in page.text

    # Moving Bo ends the session opened for owls; his token now acts as bats.
    board.accounts.move("b1", "bats")
    ended = c.get("/submissions", headers={"Accept": "text/html"}, follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/login"
    assert board.teams.who(tokens["Bo"]) == ("team", "bats")
    # Reissuing Ana's token stops her old one only.
    _, new = board.accounts.reissue("Ana")
    assert c.get("/api/submissions", headers=ana).status_code == 401
    assert c.get("/api/submissions",
                 headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert board.teams.who(tokens["Cy"]) == ("team", "bats")
    assert board.teams.who(portal.tokens["owls"]) == ("team", "owls")
    board.accounts.revoke("c1")
    assert board.teams.who(tokens["Cy"]) is None
    # The organizer's page lists the students.
    organizer = c.get("/organizer", headers=portal.auth("organizer"))
    assert "Ana" in organizer.text and "Bo, Cy" in organizer.text


def test_team_list_rename_remove_move(comp, tmp_path, capsys):
    import_roster(comp, write_roster(tmp_path / "r.csv", [
        {"name": "Ana", "id": "a1", "team": "owls"}, {"name": "Bo", "id": "b1", "team": "owls"},
        {"name": "Cy", "id": "c1", "team": "bats"}]), tmp_path / "t.csv", capsys)
    tokens = {r["name"]: r["token"] for r in sheet_rows(tmp_path / "t.csv")}
    code, out, _ = run_cli(["team", "list", comp, "--json"], capsys)
    import json

    listed = {t["team"]: t for t in json.loads(out)}
    assert listed["owls"]["students"] == ["Ana", "Bo"] and listed["bats"]["students"] == ["Cy"]

    assert run_cli(["team", "rename", comp, "owls", "Hoot Owls"], capsys)[0] == 0
    board = board_of(comp)
    assert board.teams.who(tokens["Ana"]) == ("team", "Hoot Owls")
    code, _, err = run_cli(["team", "rename", comp, "bats", "HOOT OWLS"], capsys)
    assert code == 2 and "looks like the existing team 'Hoot Owls'" in err
    code, _, err = run_cli(["team", "rename", comp, "moles", "x"], capsys)
    assert code == 2 and "no team called 'moles'" in err

    code, _, err = run_cli(["team", "remove", comp, "bats"], capsys)
    assert code == 2 and "1 student(s)" in err and "team move" in err
    code, out, err = run_cli(["team", "move", comp, "Cy", "Hoot Owls"], capsys)
    assert code == 0 and "token is unchanged" in out, err
    assert board.teams.who(tokens["Cy"]) == ("team", "Hoot Owls")
    assert run_cli(["team", "remove", comp, "bats"], capsys)[0] == 0
    assert "bats" not in {t["team"] for t in board.teams.overview()}

    # A team with submissions is never removed: its submissions are kept.
    sample = comp / "public" / "sample_submission.csv"
    assert board.submissions.submit(sample, "Hoot Owls").status == "scored"
    code, _, err = run_cli(["team", "remove", comp, "Hoot Owls"], capsys)
    assert code == 2 and "1 submission(s)" in err and "never removed" in " ".join(err.split())
    assert len(board.submissions.of_team("Hoot Owls")) == 1

    board.teams.ensure("ensemble", board.ctx.now(), baseline=True)
    code, _, err = run_cli(["team", "move", comp, "Cy", "ensemble"], capsys)
    assert code == 2 and "baseline team" in err

    code, out, err = run_cli(["account", "reissue", comp, "a1"], capsys)
    assert code == 0 and "token:" in out, err
    assert board.teams.who(tokens["Ana"]) is None and board.teams.who(tokens["Bo"])
    code, out, _ = run_cli(["account", "list", comp, "--json"], capsys)
    assert [(a["name"], a["team"]) for a in json.loads(out)] == [
        ("Ana", "Hoot Owls"), ("Bo", "Hoot Owls"), ("Cy", "Hoot Owls")]


def test_grades_list_every_student_by_name(demo_dirs, tmp_path):
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    portal = Portal(root)
    board = Board(PreparedCompetition.open(root))
    board.accounts.import_roster(read_roster(
        "name,id,email,team\nBo,b1,bo@x.example,owls\n=cmd|' /C calc'!A0,a1,,owls\n"
        "Cy,c1,,bats\nDee,d1,,crows\n", "r.csv"), "r.csv", lambda issued: None)
    board.teams.add("bats", ["Cy", "Eli"])  # a member without an account is listed too
    assert portal.submit("owls", portal.sample).status_code == 201
    text = portal.client.get("/api/organizer/grades.csv",
                             headers=portal.auth("organizer")).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["rank"], r["team"], r["name"], r["student_id"]) for r in rows] == [
        ("1", "owls", "'=cmd|' /C calc'!A0", "a1"), ("1", "owls", "Bo", "b1"),
        ("", "bats", "Cy", "c1"), ("", "bats", "Eli", ""),
        ("", "crows", "Dee", "d1")]  # no submission yet: listed, no rank
    assert rows[1]["email"] == "bo@x.example" and rows[0]["private_score"]


def test_migration_up_and_down_on_an_old_store(comp, tmp_path, store_url, capsys):
    """A store at revision 0002 (before accounts) with a team and its token: upgraded, the
    token still works and students can be added; downgraded, the accounts go and the team's
    token still works; upgraded again, as new."""
    url = store_url or db.store_url(comp)
    board = board_of(comp)
    token = board.teams.issue_token("owls")
    board.engine.dispose()
    engine = create_engine(url)

    def alembic(command: str, revision: str) -> None:
        with engine.begin() as conn:
            migrations._alembic(conn, command, revision)

    alembic("downgrade", "0002")
    with engine.connect() as conn:
        assert migrations.current(conn) == "0002"
    code, _, err = run_cli(["team", "list", comp], capsys)
    assert code == 2 and "competition migrate" in err
    code, out, err = run_cli(["migrate", comp], capsys)
    assert code == 0 and f"schema revision 0002 -> {migrations.HEAD}" in out, err
    board = board_of(comp)
    assert board.teams.who(token) == ("team", "owls")
    import_roster(comp, write_roster(tmp_path / "r.csv", [
        {"name": "Ana", "id": "a1", "team": "owls"}]), tmp_path / "t.csv", capsys)
    [ana] = sheet_rows(tmp_path / "t.csv")
    assert board.teams.who(ana["token"]) == ("team", "owls")
    board.engine.dispose()

    alembic("downgrade", "0002")
    board_url = url
    with engine.connect() as conn:
        assert "accounts" not in set(conn.dialect.get_table_names(conn))
    engine.dispose()
    assert migrations.upgrade(board_url) == ("0002", migrations.HEAD)
    board = board_of(comp)
    assert board.teams.who(token) == ("team", "owls")  # the team's token throughout
    assert board.teams.who(ana["token"]) is None and board.accounts.every() == []
    board.engine.dispose()


def test_a_roster_the_csv_module_cannot_read_is_refused_naming_the_line():
    """A cell over the csv module's size limit (a pasted file, a hostile form answer) is a
    RosterError naming its line, not a crash."""
    text = "name,id\nAna,a1\n" + "B" * 200_000 + ",b1\n"
    with pytest.raises(RosterError, match=r"r\.csv:3: not readable as CSV"):
        read_roster(text, "r.csv")
