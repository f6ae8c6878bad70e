"""Team forming (issue 28, Kaggle InClass): students invite, join, merge and leave, within the
team size limit and Kaggle's merge rule on submissions, until the merger deadline; baseline
teams are never joined; codes are unguessable, stored hashed, and admit once; moved students'
old sessions end; concurrent joins cannot pass the size limit."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from competition.board.context import Closed, RuleError
from competition.board.roster import read_roster
from competition.board.store import db
from competition.board.store.schema import selections, sessions, submissions, team_invitations
from competition.board.team_forming import CODE_BYTES, code_hash, new_code
from competition.board.teams import token_hash
from competition.configs import RulesConfig, parse
from competition.errors import ConfigError
from tests.test_bad_input import run_cli
from tests.test_board_rules import Clock, board_of
from tests.test_store import make_comp, variant
from tests.test_web import Portal, form_token
from tests.test_web_security import edit_rules

START = dt.datetime(2026, 11, 20, 9, 0)
DEADLINE = dt.datetime(2026, 12, 20, 12, 0)
ROSTER = ("name,id,team\nAna,a1,owls\nBo,b1,owls\nCy,c1,bats\nDee,d1,bats\nEd,e1,\n"
          "Flo,f1,\nGus,g1,\n")


def students(board) -> dict[str, str]:
    sheet: list = []
    board.accounts.import_roster(read_roster(ROSTER, "r.csv"), "r.csv", sheet.extend)
    return {i.name: token_hash(i.token) for i in sheet} | \
        {f"{i.name}!token": i.token for i in sheet}


@pytest.fixture
def made(demo_dirs, tmp_path, store_url, monkeypatch):
    if store_url:  # the command line's store too
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    comp = make_comp(demo_dirs, tmp_path, start=START.isoformat() + "Z",
                     deadline=DEADLINE.isoformat() + "Z", daily_limit=2, team_size_limit=3)
    clock = Clock(START + dt.timedelta(hours=1))
    board = board_of(comp, store_url, clock)
    return comp, board, students(board), clock


def team_of(board, name: str) -> str:
    return next(a["team"] for a in board.accounts.every() if a["name"] == name)


def test_the_rules_are_read_and_checked():
    rules = parse(RulesConfig, {"team_size_limit": 3, "merger_deadline": "2026-12-01"}, "x")
    assert rules.team_size_limit == 3 and rules.merger_deadline == dt.datetime(2026, 12, 1)
    assert RulesConfig().team_size_limit is None and RulesConfig().merger_deadline is None
    with pytest.raises(ConfigError, match="merger_deadline .* is after the deadline"):
        parse(RulesConfig, {"deadline": "2026-12-01", "merger_deadline": "2026-12-02"}, "c")
    with pytest.raises(ConfigError, match="team_size_limit"):
        parse(RulesConfig, {"team_size_limit": 0}, "c")


def test_invite_and_join(made):
    _, board, who, _ = made
    forming = board.team_forming
    code, row = forming.invite(who["Ana"])
    assert row["team"] == "owls"
    # Unguessable (144 bits: 24 URL-safe characters) and kept as a hash only.
    assert len(code) >= 24
    with db.read(board.engine) as conn:
        stored = conn.execute(select(team_invitations.c.code_sha256)).scalars().all()
    assert stored == [code_hash(code)] and code not in stored
    many = {new_code() for _ in range(2000)}
    assert len(many) == 2000 and all(len(c) == 24 for c in many)
    assert CODE_BYTES * 8 >= 128
    assert forming.view(who["Ana"])["invitations"][0]["id"] == row["id"]
    assert forming.join(who["Ed"], code) == "owls"
    assert team_of(board, "Ed") == "owls"
    assert board.teams.who(who["Ed!token"]) == ("team", "owls")
    # Ed's team of one had nothing of its own: it is gone.
    assert "Ed" not in {t["team"] for t in board.teams.overview()}
    # A code admits once.
    with pytest.raises(RuleError, match="used already"):
        forming.join(who["Flo"], code)


def test_codes_expired_revoked_unknown_own_refused(made):
    _, board, who, clock = made
    forming = board.team_forming
    old, _ = forming.invite(who["Ana"])
    revoked, row = forming.invite(who["Ana"])
    forming.revoke(who["Bo"], row["id"])  # any student of the team
    with pytest.raises(RuleError, match="no open invitation"):
        forming.revoke(who["Cy"], forming.invite(who["Ana"])[1]["id"])  # not Cy's team's
    with pytest.raises(RuleError, match="revoked"):
        forming.join(who["Ed"], revoked)
    with pytest.raises(RuleError, match="no such invitation code"):
        forming.join(who["Ed"], old[:-2] + "xx")
    with pytest.raises(RuleError, match="your own team"):
        forming.join(who["Bo"], old)
    clock.set(clock.t + dt.timedelta(days=8))
    with pytest.raises(RuleError, match="expired"):
        forming.join(who["Ed"], old)
    assert team_of(board, "Ed") == "Ed"


def test_a_team_left_without_students_keeps_its_submissions_not_its_codes(made, tmp_path):
    comp, board, who, _ = made
    forming = board.team_forming
    # A team of the organizer's (`team add`, a token of its own) keeps its submissions when
    # its last student joins another team.
    board.teams.issue_token("herons")
    board.accounts.move("g1", "herons")
    board.submissions.submit(variant(comp, tmp_path, 0), "herons")
    left_open, _ = forming.invite(who["Gus"])
    forming.join(who["Gus"], forming.invite(who["Ana"])[0])
    assert "herons" in {t["team"] for t in board.teams.overview()}  # its submission is kept
    with pytest.raises(RuleError, match="revoked"):
        forming.join(who["Flo"], left_open)


def test_the_organizers_move_tidies_the_team_left_as_a_join_does(made, tmp_path):
    """`team move` of a team's last student: the team's open codes end (nobody is left to
    have invited anyone into its submissions); the team stays for `team remove`."""
    comp, board, who, _ = made
    forming = board.team_forming
    board.submissions.submit(variant(comp, tmp_path, 0), "Ed")
    left_open, _ = forming.invite(who["Ed"])
    board.accounts.move("e1", "owls")
    assert "Ed" in {t["team"] for t in board.teams.overview()}  # its submission is kept
    with pytest.raises(RuleError, match="revoked"):
        forming.join(who["Flo"], left_open)


def test_the_last_student_joining_takes_the_submissions_under_the_merge_rule(made, tmp_path):
    """Joining alone from a team of one with submissions is a merge: it may not pass the merge
    rule, nor leave a team without students on the boards (a second entry for the student)."""
    comp, board, who, clock = made
    forming = board.team_forming
    board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    board.submissions.submit(variant(comp, tmp_path, 1), "owls")
    board.submissions.submit(variant(comp, tmp_path, 2), "Ed")
    code, _ = forming.invite(who["Ana"])
    with pytest.raises(RuleError, match="3 counted submissions together"):
        forming.join(who["Ed"], code)
    assert team_of(board, "Ed") == "Ed"
    clock.set(clock.t + dt.timedelta(days=1))
    assert forming.join(who["Ed"], code) == "owls"
    assert "Ed" not in {t["team"] for t in board.teams.overview()}
    assert len(board.submissions.of_team("owls")) == 3


def test_the_size_limit_is_kept(made):
    _, board, who, _ = made
    forming = board.team_forming
    forming.join(who["Ed"], forming.invite(who["Ana"])[0])  # owls: 3, the limit
    with pytest.raises(RuleError, match="over the team size limit of 3"):
        forming.invite(who["Ana"])
    code = forming.invite(who["Cy"])[0]  # bats: 2
    with pytest.raises(RuleError, match="team 'bats' has 2 student.*limit of 3"):
        forming.merge(who["Ana"], code)  # 3 + 2
    assert forming.join(who["Flo"], code) == "bats"
    # The organizer's move keeps to the limit, unless forced.
    with pytest.raises(RuleError, match="--force"):
        board.accounts.move("g1", "bats")
    board.accounts.move("g1", "bats", force=True)
    assert len(forming.view(who["Cy"])["members"]) == 4


def test_merge_moves_students_and_submissions(made, tmp_path):
    comp, board, who, clock = made
    forming = board.team_forming
    owls_made = board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    ed_made = board.submissions.submit(variant(comp, tmp_path, 1), "Ed")
    board.selections.select(owls_made.id, "owls")
    board.selections.select(ed_made.id, "Ed")
    code, _ = forming.invite(who["Ana"])
    # The merged team's final selections are the target's; Ed's team is gone.
    assert forming.merge(who["Ed"], code) == "owls"
    assert team_of(board, "Ed") == "owls"
    with db.read(board.engine) as conn:
        teams_of = set(conn.execute(select(submissions.c.team_id)).scalars())
    assert len(teams_of) == 1
    assert len(board.submissions.of_team("owls")) == 2
    assert "Ed" not in {t["team"] for t in board.teams.overview()}
    with db.read(board.engine) as conn:
        chosen = conn.execute(select(selections.c.submission_id)).scalars().all()
    assert chosen == [owls_made.id]


def test_merge_refused_past_the_daily_limit_rule(made, tmp_path):
    comp, board, who, clock = made
    forming = board.team_forming
    # Day one of the competition: daily_limit 2 x 1 day = 2 submissions for a merged team.
    board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    board.submissions.submit(variant(comp, tmp_path, 1), "owls")
    board.submissions.submit(variant(comp, tmp_path, 2), "Ed")
    code, _ = forming.invite(who["Ana"])
    with pytest.raises(RuleError, match="3 counted submissions together; a team could have "
                                        "made at most 2 so far"):
        forming.merge(who["Ed"], code)
    # A day later the allowance is 4: they merge.
    clock.set(clock.t + dt.timedelta(days=1))
    assert forming.merge(who["Ed"], code) == "owls"
    # A student with submissions can leave; the submissions stay with the team.
    assert forming.leave(who["Ed"]) == "Ed"
    assert len(board.submissions.of_team("owls")) == 3


def test_baseline_teams_refused(made):
    _, board, who, _ = made
    board.teams.ensure("baseline", START, baseline=True)
    with db.write(board.engine) as conn:  # a code of a baseline team cannot be made; planted
        team_id = board.teams.id_of(conn, "baseline")
        conn.execute(team_invitations.insert().values(
            team_id=team_id, code_sha256=code_hash("planted"), created_at=START,
            expires_at=DEADLINE))
    for act in (board.team_forming.join, board.team_forming.merge):
        with pytest.raises(RuleError, match="baseline team"):
            act(who["Ed"], "planted")


def test_teams_frozen_after_the_merger_deadline(demo_dirs, tmp_path, store_url, capsys):
    merger = DEADLINE - dt.timedelta(days=5)
    comp = make_comp(demo_dirs, tmp_path, deadline=DEADLINE.isoformat() + "Z",
                     merger_deadline=merger.isoformat() + "Z")
    clock = Clock(merger - dt.timedelta(hours=1))
    board = board_of(comp, store_url, clock)
    who = students(board)
    code, _ = board.team_forming.invite(who["Ana"])
    clock.set(merger)
    for act in (lambda: board.team_forming.join(who["Ed"], code),
                lambda: board.team_forming.merge(who["Ed"], code),
                lambda: board.team_forming.invite(who["Ana"]),
                lambda: board.team_forming.leave(who["Ana"])):
        with pytest.raises(Closed, match="merger deadline was 2026-12-15T12:00:00Z"):
            act()
    assert board.team_forming.view(who["Ana"])["frozen"]
    # The organizer's override still moves a student.
    board.accounts.move("e1", "owls")
    assert team_of(board, "Ed") == "owls"


def test_the_deadline_freezes_teams_without_a_merger_deadline(made):
    _, board, who, clock = made
    clock.set(DEADLINE)
    with pytest.raises(Closed, match="merger deadline \\(the competition's deadline"):
        board.team_forming.invite(who["Ana"])


def test_a_teams_shared_token_cannot_form_teams(made):
    _, board, who, _ = made
    shared = board.teams.issue_token("owls")
    with pytest.raises(RuleError, match="students signed in with their own token"):
        board.team_forming.invite(token_hash(shared))
    code, _ = board.team_forming.invite(who["Cy"])
    with pytest.raises(RuleError, match="shared team token"):
        board.team_forming.merge(who["Ana"], code)


def test_concurrent_joins_cannot_pass_the_size_limit(made):
    _, board, who, _ = made
    forming = board.team_forming
    codes = [forming.invite(who["Ana"])[0] for _ in range(4)]  # owls: 2 of 3
    joiners = ["Ed", "Flo", "Gus", "Cy"]
    results: list = []
    barrier = threading.Barrier(len(joiners))

    def join(name: str, code: str) -> None:
        barrier.wait()
        try:
            results.append(forming.join(who[name], code))
        except RuleError as e:
            results.append(e)

    threads = [threading.Thread(target=join, args=pair)
               for pair in zip(joiners, codes, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("owls") == 1
    assert len(forming.view(who["Ana"])["members"]) == 3


def test_moved_students_sessions_end(made):
    _, board, who, _ = made
    from competition.board.sessions import Sessions

    s = Sessions(board.ctx, board.teams)
    session_id, _ = s.open(who["Ed!token"])
    other_id, _ = s.open(who["Ana!token"])
    code, _ = board.team_forming.invite(who["Ana"])
    board.team_forming.join(who["Ed"], code)
    assert s.get(session_id) is None and s.get(other_id) is not None
    # Deleted, not merely dormant: leaving for a team named as the old one revives nothing.
    with db.read(board.engine) as conn:
        left = conn.execute(select(sessions.c.credential_sha256)).scalars().all()
    assert who["Ed"] not in left
    # The student's own browser follows into the new team.
    bo_id, _ = s.open(who["Bo!token"])
    held = s.held(bo_id)
    assert board.team_forming.leave(who["Bo"]) == "Bo"
    assert s.get(bo_id) is None
    followed = s.reopen(*held)
    assert followed is not None and followed[1].team == "Bo"
    assert s.get(followed[0]).team == "Bo"


def test_team_move_force_on_the_command_line(made, capsys):
    comp, board, *_ = made
    code, _, err = run_cli(["team", "move", comp, "e1", "owls"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["team", "move", comp, "f1", "owls"], capsys)
    assert code != 0 and "team size limit of 3" in err and "--force" in err
    code, _, err = run_cli(["team", "move", comp, "f1", "owls", "--force"], capsys)
    assert code == 0, err


# --- the portal -----------------------------------------------------------------------------

def test_the_api_and_the_team_page(demo_dirs, tmp_path):
    root = make_comp(demo_dirs, tmp_path, team_size_limit=3)
    portal = Portal(root)
    board = board_of(root, None)
    who = students(board)
    c = portal.client

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {who[name + '!token']}"}

    shared = c.get("/api/team", headers=portal.auth("owls"))  # a team's shared token
    assert shared.status_code == 403 and "their own token" in shared.json()["detail"]
    assert c.get("/api/team", headers=portal.auth("organizer")).status_code == 403
    assert c.post("/api/team/invitations").status_code == 401
    made = c.post("/api/team/invitations", headers=bearer("Ana"))
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    listed = c.get("/api/team", headers=bearer("Bo")).json()
    assert listed["members"] == ["Ana", "Bo"] and listed["team_size_limit"] == 3
    assert code not in str(listed)
    # Cy cannot revoke owls' code; Ana can. A revoked code then refuses, naming why.
    inv = made.json()["id"]
    assert c.delete(f"/api/team/invitations/{inv}", headers=bearer("Cy")).status_code == 404
    assert c.delete(f"/api/team/invitations/{inv}", headers=bearer("Ana")).status_code == 204
    refused = c.post("/api/team/join", json={"code": code}, headers=bearer("Ed"))
    assert refused.status_code == 400 and "revoked" in refused.json()["detail"]
    code = c.post("/api/team/invitations", headers=bearer("Ana")).json()["code"]
    joined = c.post("/api/team/join", json={"code": code}, headers=bearer("Ed"))
    assert joined.status_code == 200 and joined.json() == {"team": "owls"}
    assert c.post("/api/team/leave", headers=bearer("Ed")).json() == {"team": "Ed"}

    # The page: signed in as Flo, a code made, Gus joins Flo's team by the form.
    login = c.get("/login")
    c.post("/login", data={"token": who["Flo!token"], "csrf_token": form_token(login.text)})
    page = c.get("/team")
    assert page.status_code == 200 and "Team size limit: 3" in page.text
    assert c.post("/team/invitations", data={"csrf_token": "wrong"}).status_code == 403
    shown = c.post("/team/invitations", data={"csrf_token": form_token(page.text)})
    assert shown.status_code == 201
    import re

    code = re.search(r'class="invitation-code">([^<]+)<', shown.text).group(1)
    assert c.post("/api/team/join", json={"code": code},
                  headers=bearer("Gus")).json() == {"team": "Flo"}
    # Flo merges her team into owls' from the page; her browser follows into owls.
    code = c.post("/api/team/invitations", headers=bearer("Ana")).json()["code"]
    refused = c.post("/team/merge", data={"csrf_token": form_token(page.text), "code": code})
    assert refused.status_code == 400 and "over the team size limit" in refused.text
    c.post("/api/team/leave", headers=bearer("Bo"))
    merged = c.post("/team/merge", data={"csrf_token": form_token(page.text), "code": code})
    assert merged.status_code == 200 and "merged into" in merged.text
    after = c.get("/team")
    assert after.status_code == 200 and "in team <strong>owls</strong>" in after.text
    assert sorted(board.team_forming.view(who["Ana"])["members"]) == ["Ana", "Flo", "Gus"]
    # Frozen: every change is a 403 naming the merger deadline; the page says so.
    edit_rules(root, deadline="2099-01-01T00:00:00Z", merger_deadline="2020-01-01T00:00:00Z")
    for path, body in (("/api/team/invitations", None), ("/api/team/leave", None),
                       ("/api/team/join", {"code": code})):
        frozen = c.post(path, json=body, headers=bearer("Ana"))
        assert frozen.status_code == 403, path
        assert "merger deadline was 2020-01-01T00:00:00Z" in frozen.json()["detail"]
    assert "Teams are frozen" in c.get("/team").text


def test_an_upload_arriving_while_its_team_merges_away_is_refused(made, tmp_path, monkeypatch):
    """The portal submits for a signed-in team without creating teams: an upload whose team
    was merged into another (before it was read, or while it was staged) is refused as
    Closed, records nothing and does not bring the old team back by its name."""
    import competition.board.submissions as submitting

    comp, board, who, clock = made
    forming = board.team_forming
    code, _ = forming.invite(who["Ana"])
    staged_for_real = submitting.stage_file

    def merged_meanwhile(*args, **kwargs):
        staged = staged_for_real(*args, **kwargs)
        assert forming.merge(who["Ed"], code) == "owls"  # while the file was staged
        return staged

    monkeypatch.setattr(submitting, "stage_file", merged_meanwhile)
    with pytest.raises(Closed, match="no longer exists"):
        board.submissions.submit(variant(comp, tmp_path, 0), "Ed", queue=True,
                                 create_team=False)
    monkeypatch.setattr(submitting, "stage_file", staged_for_real)
    with pytest.raises(Closed, match="no longer exists"):  # and once it is gone
        board.submissions.submit(variant(comp, tmp_path, 1), "Ed", queue=True,
                                 create_team=False)
    assert "Ed" not in {t["team"] for t in board.teams.overview()}
    with db.read(board.engine) as conn:
        assert conn.execute(select(submissions.c.id)).first() is None
    made_now = board.submissions.submit(variant(comp, tmp_path, 2), "owls", queue=True,
                                        create_team=False)
    assert made_now.team == "owls"


def test_guessing_invitation_codes_is_limited_per_student(demo_dirs, tmp_path):
    """Unknown codes count like failed sign-ins, by student: past the limit (the sign-in
    settings' window and attempts per token prefix, 10 by default) the student's codes are
    refused with a 429 before they are tried, a real one too; other students are not held
    up, and codes that were real (used, revoked) are no guesses."""
    root = make_comp(demo_dirs, tmp_path, team_size_limit=3)
    portal = Portal(root)
    who = students(board_of(root, None))
    c = portal.client

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {who[name + '!token']}"}

    code = c.post("/api/team/invitations", headers=bearer("Ana")).json()["code"]
    for k in range(10):
        guess = c.post("/api/team/merge", json={"code": f"guess-{k}"}, headers=bearer("Ed"))
        assert guess.status_code == 400, (k, guess.text)
    refused = c.post("/api/team/join", json={"code": code}, headers=bearer("Ed"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "invitation codes" in refused.json()["detail"]
    # The page refuses alike.
    login = c.get("/login")
    c.post("/login", data={"token": who["Ed!token"], "csrf_token": form_token(login.text)})
    page = c.get("/team")
    assert c.post("/team/join", data={"csrf_token": form_token(page.text),
                                      "code": code}).status_code == 429
    # Another student is not held up; the code is still good.
    assert c.post("/api/team/join", json={"code": code},
                  headers=bearer("Flo")).json() == {"team": "owls"}
    # A used code is no guess (Gus: refused 400 as often as he likes, then joins).
    for _ in range(12):
        assert c.post("/api/team/join", json={"code": code},
                      headers=bearer("Gus")).status_code == 400
    fresh = c.post("/api/team/invitations", headers=bearer("Cy")).json()["code"]
    assert c.post("/api/team/join", json={"code": fresh},
                  headers=bearer("Gus")).json() == {"team": "bats"}


def test_a_team_of_one_is_never_named_with_the_students_id_or_email(made):
    """Team names are on the public boards: where the student's name is taken, leaving
    numbers the new team instead of naming it with the student's id or email."""
    _, board, who, _ = made
    forming = board.team_forming
    forming.join(who["Flo"], forming.invite(who["Ana"])[0])
    board.teams.ensure("Flo", START)  # the name is taken meanwhile
    name = forming.leave(who["Flo"])
    assert name == "Flo 2" and "f1" not in name


def test_making_and_revoking_codes_in_a_loop_is_limited_per_day(made):
    """Open codes are limited (20), and so are codes made per UTC day (50, revoked and used
    ones too): a loop making and revoking codes would fill the store."""
    from competition.board.context import LimitReached

    _, board, who, clock = made
    forming = board.team_forming
    for _ in range(50):
        forming.revoke(who["Ana"], forming.invite(who["Ana"])[1]["id"])
    with pytest.raises(LimitReached, match="made 50 invitation codes today"):
        forming.invite(who["Ana"])
    forming.invite(who["Cy"])  # another team is not held up
    clock.set(clock.t + dt.timedelta(days=1))
    forming.invite(who["Ana"])


def test_signed_in_pages_are_kept_by_no_cache(demo_dirs, tmp_path):
    """A new invitation code (or any signed-in page) must not come back from a browser's
    cache to the next student at a shared computer."""
    root = make_comp(demo_dirs, tmp_path, team_size_limit=3)
    portal = Portal(root)
    who = students(board_of(root, None))
    c = portal.client
    assert "no-store" not in c.get("/login").headers.get("cache-control", "")
    login = c.get("/login")
    c.post("/login", data={"token": who["Ana!token"], "csrf_token": form_token(login.text)})
    page = c.get("/team")
    assert page.headers["cache-control"] == "no-store"
    shown = c.post("/team/invitations", data={"csrf_token": form_token(page.text)})
    assert shown.status_code == 201 and shown.headers["cache-control"] == "no-store"
