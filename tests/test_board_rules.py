"""The board's rules against hostile participants (issue 16), on SQLite and PostgreSQL: an
hourly upload limit that counts every upload, no file kept for refused or invalid uploads,
rescoring that never counts a submission past its day's limit, team names that cannot be
look-alikes of each other, and capped messages."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    inspect,
    select,
)

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.context import Closed, LimitReached, RuleError, TooManyUploads
from competition.board.names import folded, name_key
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer, ScoredFile
from competition.board.status import Status
from competition.board.store import db
from competition.board.store.files import FILES_DIR, stage_file
from competition.board.store.schema import score_history, submissions, teams, uploads
from competition.board.store.schema import sessions as sessions_table
from competition.errors import SubmissionError
from competition.formats.files import Limits, SubmissionFile
from tests.processes import clean_context
from tests.test_bad_input import run_cli
from tests.test_store import make_comp, variant

DAY1 = dt.datetime(2026, 11, 22, 9, 0)


class Clock:
    """A settable clock that moves `tick` at each reading."""

    def __init__(self, start: dt.datetime, tick: dt.timedelta = dt.timedelta(seconds=1)):
        self.t, self.tick = start, tick

    def set(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        self.t += self.tick
        return self.t


class ForcedScorer(ChildScorer):
    """The real scorer, unless `force` names an outcome: then that outcome without scoring
    (a scorer failure, or a file the validator refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.force: Status | None = None

    def score(self, comp, path, file_name, *, details, started=None, **kwargs) -> ScoredFile:
        if self.force is not None:
            return ScoredFile(self.force, error=f"forced {self.force} (test double)")
        return super().score(comp, path, file_name, details=details, started=started, **kwargs)


def board_of(comp: Path, url, clock=None, scorer=None) -> Board:
    kwargs = {} if clock is None else {"now": clock}
    return Board(PreparedCompetition.open(comp), url=url, scorer=scorer, **kwargs)


def kept_files(comp: Path) -> list[Path]:
    files = comp / FILES_DIR
    return sorted(p for p in files.rglob("*") if p.is_file()) if files.exists() else []


def bad_file(tmp_path: Path, name: str = "bad.csv", text: str = "nonsense\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def count(board: Board, table, *where) -> int:
    with board.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


# --- 1. every upload counts toward an hourly limit ------------------------------------------

def test_every_upload_counts_toward_the_hourly_limit(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=2, uploads_per_hour=5)
    clock = Clock(DAY1, tick=dt.timedelta(0))  # set by hand: one upload a minute

    def at(minute: int) -> None:
        clock.set(DAY1 + dt.timedelta(minutes=minute))

    board = board_of(comp, store_url, clock)
    at(0)
    first = board.submissions.submit(bad_file(tmp_path), "owls")
    assert first.status == "invalid"
    assert first.remaining_today == 2  # invalid files still do not use up the daily limit
    at(1)
    assert board.submissions.submit(variant(comp, tmp_path, 0), "owls").remaining_today == 1
    at(2)
    assert board.submissions.submit(variant(comp, tmp_path, 0), "owls").status == "duplicate"
    at(3)
    assert board.submissions.submit(variant(comp, tmp_path, 1), "owls").remaining_today == 0
    at(4)
    with pytest.raises(LimitReached, match="used its 2 submissions") as daily:
        board.submissions.submit(variant(comp, tmp_path, 2), "owls")
    assert not isinstance(daily.value, TooManyUploads)
    # Five uploads in the hour, the one refused by the daily limit among them: the sixth is
    # refused, whatever it is, saying when the next is possible (the first's time + 1 h).
    with pytest.raises(TooManyUploads, match="5 uploads in the last hour") as hourly:
        board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    assert isinstance(hourly.value, LimitReached)  # the portal's 429
    assert hourly.value.retry_at == DAY1 + dt.timedelta(hours=1)  # the first's time + 1 h
    assert hourly.value.retry_after_s == 56 * 60
    assert "possible at 2026-11-22T10:00:00Z" in str(hourly.value)
    assert count(board, uploads) == 5
    # The limit is per team.
    assert board.submissions.submit(variant(comp, tmp_path, 3), "larks").status == "scored"
    # The hour slides: once the first upload is an hour old, one more fits, then none.
    clock.set(hourly.value.retry_at)
    assert board.submissions.submit(variant(comp, tmp_path, 1), "owls").status == "duplicate"
    with pytest.raises(TooManyUploads, match="possible at 2026-11-22T10:01:00Z"):
        board.submissions.submit(variant(comp, tmp_path, 1), "owls")
    statuses = [o.status for o in board.submissions.of_team("owls")]
    assert statuses == ["invalid", "scored", "duplicate", "scored", "duplicate"]


def test_the_hourly_limit_is_read_from_competition_yaml(demo_dirs, tmp_path):
    comp = make_comp(demo_dirs, tmp_path, uploads_per_hour=1)
    board = board_of(comp, None)
    board.submissions.submit(bad_file(tmp_path), "owls")
    with pytest.raises(TooManyUploads, match="the limit is 1"):
        board.submissions.submit(bad_file(tmp_path), "owls")
    assert board_of(make_comp(demo_dirs, tmp_path / "default"), None).rules.uploads_per_hour == 20


def _upload_in_process(comp, url, path, team, barrier, queue):
    barrier.wait()
    try:
        outcome = Board(PreparedCompetition.open(comp), url=url).submissions.submit(
            Path(path), team)
        queue.put(("ok", outcome.status))
    except RuleError as e:
        queue.put((type(e).__name__, str(e)))
    except Exception as e:  # reported to the test, which fails on it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_the_hourly_limit_holds_under_concurrent_processes(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=50, uploads_per_hour=4)
    board_of(comp, store_url)  # the schema, once
    # Invalid and valid files alike: every upload counts.
    paths = [bad_file(tmp_path, f"bad{k}.csv", f"nonsense {k}\n") if k % 2
             else variant(comp, tmp_path, k) for k in range(12)]
    ctx = clean_context()
    barrier, queue = ctx.Barrier(len(paths)), ctx.Queue()
    procs = [ctx.Process(target=_upload_in_process,
                         args=(comp, store_url, path, "owls", barrier, queue))
             for path in paths]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [r for r in results if r[0] == "error"], results
    assert sum(r[0] == "ok" for r in results) == 4, results
    assert sum(r[0] == "TooManyUploads" for r in results) == 8, results
    board = board_of(comp, store_url)
    assert count(board, uploads) == 4 and count(board, submissions) == 4


# --- 2. no file kept for refused or invalid uploads --------------------------------------

def test_rule_refusals_never_store_a_file(demo_dirs, tmp_path, store_url, monkeypatch):
    from competition.board import submissions as submitting

    staged = []
    real_stage = submitting.stage_file
    monkeypatch.setattr(submitting, "stage_file",
                        lambda *a: staged.append(a) or real_stage(*a))
    comp = make_comp(demo_dirs, tmp_path, daily_limit=1, uploads_per_hour=3)
    clock = Clock(DAY1)
    board = board_of(comp, store_url, clock)
    kept = board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    assert kept.status == "scored" and len(kept_files(comp)) == 1
    with pytest.raises(LimitReached):  # the daily limit: read and hashed, then discarded
        board.submissions.submit(variant(comp, tmp_path, 1), "owls")
    assert len(staged) == 2
    board.submissions.submit(variant(comp, tmp_path, 0), "owls")  # a duplicate, the third
    with pytest.raises(TooManyUploads):  # refused before the file is read
        board.submissions.submit(variant(comp, tmp_path, 2), "owls")
    assert len(staged) == 3
    closed = make_comp(demo_dirs, tmp_path / "closed", deadline="2020-01-01T00:00:00Z")
    with pytest.raises(Closed):
        board_of(closed, store_url).submissions.submit(
            variant(closed, tmp_path, 3), "owls")
    assert len(staged) == 3 and kept_files(closed) == []
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(SubmissionError, match="folder"):  # refused before a team is made
        board.submissions.submit(folder, "ghosts")
    assert "ghosts" not in {t["team"] for t in board.teams.overview()}
    assert [p.name for p in kept_files(comp)] == [Path(board.submissions.get(kept.id)
                                                       ["file_path"]).name]


def test_a_file_that_cannot_be_kept_leaves_no_pending_row(demo_dirs, tmp_path, store_url,
                                                          monkeypatch):
    from competition.board.store.files import Staged

    comp = make_comp(demo_dirs, tmp_path, daily_limit=1)
    board = board_of(comp, store_url)

    def full_disk(self, suffix):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Staged, "keep", full_disk)
    with pytest.raises(OSError):
        board.submissions.submit(variant(comp, tmp_path, 0), "owls")
    row = board.submissions.get(1)
    assert row["status"] == "failed" and not row["counted"] and "No space" in row["error"]
    monkeypatch.undo()
    assert board.submissions.submit(variant(comp, tmp_path, 0), "owls").status == "scored"
    assert not list((comp / FILES_DIR).glob(".incoming.*"))


def test_an_invalid_upload_keeps_its_row_not_its_file(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path)
    board = board_of(comp, store_url)
    outcome = board.submissions.submit(bad_file(tmp_path), "owls")
    row = board.submissions.get(outcome.id)
    assert row["status"] == "invalid" and "header" in row["error"]
    assert row["file_deleted_at"] is not None and row["file_sha256"]
    assert not (comp / row["file_path"]).exists() and kept_files(comp) == []
    assert board.rescoring.rescore() == []  # its file is gone: not rescored, not failed
    assert board.submissions.get(outcome.id)["status"] == "invalid"


def test_a_file_that_a_kept_submission_shares_is_never_removed(demo_dirs, tmp_path,
                                                               store_url):
    comp = make_comp(demo_dirs, tmp_path)
    scorer = ForcedScorer()
    board = board_of(comp, store_url, scorer=scorer)
    same = variant(comp, tmp_path, 0)
    scored = board.submissions.submit(same, "owls")
    scorer.force = Status.INVALID  # the same bytes, invalid for another team
    invalid = board.submissions.submit(same, "larks")
    assert invalid.status == "invalid"
    path = comp / board.submissions.get(scored.id)["file_path"]
    assert path.read_bytes() == same.read_bytes()
    assert board.submissions.get(invalid.id)["file_deleted_at"] is None
    other = variant(comp, tmp_path, 1)
    scorer.force = Status.FAILED  # a failed submission keeps its file for a retry...
    failed = board.submissions.submit(other, "owls")
    scorer.force = Status.INVALID  # ...whatever another team's upload of it becomes
    board.submissions.submit(other, "larks")
    failed_path = comp / board.submissions.get(failed.id)["file_path"]
    assert failed_path.is_file()
    scorer.force = None
    assert board.submissions.retry(failed.id, "owls").status == "scored"
    # A file removed with an invalid upload is kept again with a later valid one.
    third = variant(comp, tmp_path, 2)
    scorer.force = Status.INVALID
    gone = board.submissions.submit(third, "larks")
    assert not (comp / board.submissions.get(gone.id)["file_path"]).exists()
    scorer.force = None
    again = board.submissions.submit(third, "owls")
    assert again.status == "scored"
    assert (comp / board.submissions.get(again.id)["file_path"]).read_bytes() == \
        third.read_bytes()


def _share_in_process(comp, url, path, team, invalid, barrier, queue):
    barrier.wait()
    try:
        scorer = ForcedScorer()
        scorer.force = Status.INVALID if invalid else None
        outcome = Board(PreparedCompetition.open(comp), url=url, scorer=scorer
                        ).submissions.submit(Path(path), team)
        queue.put(("ok", outcome.status))
    except Exception as e:  # reported to the test, which fails on it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_concurrent_invalid_uploads_never_remove_a_shared_file(demo_dirs, tmp_path,
                                                               store_url):
    """Teams upload the same bytes at once; half of the uploads end invalid (removing the
    file if nothing kept shares it), half are kept: every kept submission's file is there."""
    comp = make_comp(demo_dirs, tmp_path, uploads_per_hour=100)
    board_of(comp, store_url)
    ctx = clean_context()
    for round_ in range(2):
        path = variant(comp, tmp_path, 10 + round_)
        n = 8
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_share_in_process,
                             args=(comp, store_url, path, f"team{k}", k % 2 == 1, barrier,
                                   queue)) for k in range(n)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=240) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert not [r for r in results if r[0] == "error"], results
        assert sorted(r[1] for r in results) == ["invalid"] * 4 + ["scored"] * 4
    board = board_of(comp, store_url)
    with board.engine.connect() as conn:
        rows = conn.execute(select(submissions.c.status, submissions.c.file_path,
                                   submissions.c.file_deleted_at)).all()
    assert len(rows) == 16
    for row in rows:
        if row.status != "invalid":
            assert (comp / row.file_path).is_file(), row
            assert row.file_deleted_at is None, row
    assert not list((comp / FILES_DIR).glob(".incoming.*"))


# --- 3. rescoring never counts a submission past its day's limit --------------------------

def test_rescore_never_counts_a_submission_past_its_days_limit(demo_dirs, tmp_path,
                                                               store_url, capsys,
                                                               monkeypatch):
    comp = make_comp(demo_dirs, tmp_path, daily_limit=2, uploads_per_hour=100)
    clock = Clock(DAY1)
    scorer = ForcedScorer()
    board = board_of(comp, store_url, clock, scorer)
    scorer.force = Status.FAILED
    full_day = board.submissions.submit(variant(comp, tmp_path, 0), "owls")  # day 1
    scorer.force = None
    for k in (1, 2):  # the team fills day 1 with two scored submissions
        assert board.submissions.submit(variant(comp, tmp_path, k), "owls").status == "scored"
    clock.set(DAY1 + dt.timedelta(days=1))
    scorer.force = Status.FAILED
    room = board.submissions.submit(variant(comp, tmp_path, 3), "owls")  # day 2
    scorer.force = None
    assert board.submissions.submit(variant(comp, tmp_path, 4), "owls").status == "scored"
    assert full_day.status == room.status == "failed"

    changes = {c["id"]: c for c in board.rescoring.rescore()}
    # Day 1 was full: valid now, yet not counted; its new score is in its history only.
    row = board.submissions.get(full_day.id)
    assert row["status"] == "failed" and not row["counted"]
    assert "does not count" in row["error"] and "2026-11-22" in row["error"]
    assert changes[full_day.id]["counted"] is False and changes[full_day.id]["note"]
    with board.engine.connect() as conn:
        history = conn.execute(select(score_history.c.status, score_history.c.public_score)
                               .where(score_history.c.submission_id == full_day.id)
                               .order_by(score_history.c.id)).all()
    assert history[-1].status == "scored" and history[-1].public_score is not None
    with board.engine.connect() as conn:
        assert board.ledger.used_today(conn, row["team_id"], DAY1) == 2
    # Day 2 had a free slot: now scored and counted, as if scored when it was made.
    assert board.submissions.get(room.id)["status"] == "scored"
    assert board.submissions.get(room.id)["counted"] and changes[room.id]["counted"] is True
    ranked = {e.submission_id for e in leaderboard.public_board(board)}
    assert full_day.id not in ranked
    # A retry counts on the submission's own day too: day 1 is full.
    with pytest.raises(LimitReached, match="2026-11-22"):
        board.submissions.retry(full_day.id, "owls")
    # The limit that applied is the one in force then, even after the organizer raises it.
    raised = make_comp(demo_dirs, tmp_path / "raised", daily_limit=5)
    (comp / "competition.yaml").write_text((raised / "competition.yaml").read_text())
    board = board_of(comp, store_url, clock, scorer)
    board.rescoring.rescore()
    assert not board.submissions.get(full_day.id)["counted"]
    # The CLI says why.
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    code, out, _ = run_cli(["rescore", comp], capsys)
    assert code == 0 and f"submission {full_day.id}:" in out and "does not count" in out


# --- 4. team names ------------------------------------------------------------------------

LOOKALIKES = ["owls", " owls ", "OWLS", "ｏｗｌｓ", "\u043ewls", "\u039fwls", "0wls", "owIs"]


def test_team_names_that_look_alike_are_one_team(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path)
    board = board_of(comp, store_url)
    board.teams.add("Owls", ["ana"])
    for name in LOOKALIKES:
        with pytest.raises(RuleError, match="looks like the existing team 'Owls'"):
            board.teams.add(name, [])
        with pytest.raises(RuleError, match="'Owls'"):  # nor may it submit as one
            board.submissions.submit(variant(comp, tmp_path, 0), name)
    assert kept_files(comp) == []
    assert [t["team"] for t in board.teams.overview()] == ["Owls"]  # as first given
    outcome = board.submissions.submit(variant(comp, tmp_path, 0), " Owls ")
    assert outcome.team == "Owls" and outcome.status == "scored"
    assert [o.id for o in board.submissions.of_team("Owls")] == [outcome.id]
    with pytest.raises(RuleError, match="'Owls'"):
        board.submissions.of_team("owls")
    # Different names stay different.
    assert board.teams.add("Owlets", []) == []
    assert folded("Team  Nine") == folded("team nine") != folded("team mine")


@pytest.mark.parametrize("name, message", [
    ("x" * 201, "201 characters long; at most 200"),
    ("Ow\x00ls", "U+0000"),
    ("Ow\tls", "U+0009"),
    ("Ow\u200bls", "U+200B"),  # zero-width space
    ("Ow\u202els", "U+202E"),  # right-to-left override
    ("   ", "empty"),
])
def test_team_names_are_bounded_and_visible(demo_dirs, tmp_path, name, message):
    board = board_of(make_comp(demo_dirs, tmp_path), None)
    with pytest.raises(RuleError, match=re.escape(message)):
        board.teams.add(name, [])
    if name.strip():
        with pytest.raises(RuleError, match=re.escape(message)):
            board.teams.add("owls", [name])  # member names too
    assert board.teams.add("y" * 200, []) == []


# Suffixes drawn as nothing or as a blank: Hangul fillers (letters), the combining grapheme
# joiner and variation selector 16 (marks), the Braille blank (a symbol).
INVISIBLE_SUFFIXES = ["\u3164", "\u115f", "\u034f", "\ufe0f", "\u2800"]


@pytest.mark.parametrize("suffix", INVISIBLE_SUFFIXES)
def test_a_name_with_an_invisible_character_is_refused(demo_dirs, tmp_path, store_url,
                                                       suffix):
    comp = make_comp(demo_dirs, tmp_path)
    board = board_of(comp, store_url)
    board.teams.add("alpha", [])
    code = f"U+{ord(suffix):04X}"
    says = re.escape(f"invisible or control character ({code})")
    for name in ("alpha" + suffix, "al" + suffix + "pha", "beta" + suffix):
        with pytest.raises(RuleError, match=says):
            board.teams.add(name, [])
    with pytest.raises(RuleError, match=re.escape(code)):
        board.teams.add("alpha", ["ana" + suffix])  # member names too
    with pytest.raises(RuleError, match=re.escape(code)):
        board.submissions.submit(variant(comp, tmp_path, 0), "alpha" + suffix)
    assert [t["team"] for t in board.teams.overview()] == ["alpha"]
    assert kept_files(comp) == []
    # The key drops them: one name with "alpha", and the same name whatever the case.
    assert folded("alpha" + suffix) == folded("ALPHA") == "alpha"
    assert name_key("al" + suffix + "pha") == name_key("alpha")


@pytest.mark.parametrize("suffix", INVISIBLE_SUFFIXES)
def test_a_stored_name_with_an_invisible_character_keeps_its_twin_out(
        demo_dirs, tmp_path, store_url, suffix):
    """A team named before the check ("alpha" + a filler, with a key of the older folding):
    opening the store gives it the key of "alpha", so "alpha" cannot be made beside it; its
    token still signs in."""
    from competition.board.sessions import Sessions
    from competition.board.teams import token_hash

    comp = make_comp(demo_dirs, tmp_path)
    board = board_of(comp, store_url)
    with board.engine.begin() as conn:
        conn.execute(insert(teams).values(name="alpha" + suffix, created_at=DAY1,
                                          baseline=False, name_key="an older folding's key",
                                          token_sha256=token_hash("an old team's token")))
    board = board_of(comp, store_url)
    with pytest.raises(RuleError, match="looks like the existing team"):
        board.teams.add("alpha", [])
    with pytest.raises(RuleError, match="looks like the existing team"):
        board.submissions.submit(variant(comp, tmp_path, 0), "Alpha")
    assert len(board.teams.overview()) == 1
    _, session = Sessions(board.ctx, board.teams).open("an old team's token")
    assert session.team == "alpha" + suffix


@pytest.mark.parametrize("name, other", [
    ("한글팀", "한국팀"),  # Korean (Hangul syllables; their jamo are not fillers)
    ("Ομάδα Άλφα", "Ομάδα Βήτα"),  # Greek
    ("Команда Альфа", "Команда Бета"),  # Cyrillic
    ("Équipe Café", "Équipe Crème"),  # accented Latin
    ("🦉 Owls", "🦇 Bats"),  # emoji
    ("\u2764\ufe0f Hearts", "\u2600\ufe0f Suns"),  # emoji presentation of a symbol
    ("Đội Việt", "Nhóm Hệ"),  # Vietnamese: two marks on one letter
    ("नमस्ते टीम", "हिंदी टीम"),  # Devanagari: vowel signs and virama
])
def test_names_in_other_scripts_still_work(demo_dirs, tmp_path, name, other):
    board = board_of(make_comp(demo_dirs, tmp_path), None)
    assert board.teams.add(name, ["김민준", "Zoë"]) == ["Zoë", "김민준"]
    assert board.teams.add(other, []) == []
    assert {t["team"] for t in board.teams.overview()} == {name, other}
    assert board.submissions.submit(variant(board.comp.root, tmp_path, 0), name).team == name
    # The presentation selector is dropped from the key: the plain symbol is the same name.
    plain = name.replace("\ufe0f", "")
    if plain != name:
        with pytest.raises(RuleError, match="looks like the existing team"):
            board.teams.add(plain, [])


def test_stacked_combining_marks_are_refused(demo_dirs, tmp_path):
    """"Zalgo" names draw over the rows around them on a board."""
    board = board_of(make_comp(demo_dirs, tmp_path), None)
    board.teams.add("alpha", [])
    for name in ("alpha" + "\u0301" * 30, "al\u0301\u0302\u0303\u0304\u0305pha"):
        with pytest.raises(RuleError, match="stacks more than 4 combining marks"):
            board.teams.add(name, [])
        with pytest.raises(RuleError, match="stacks more than 4 combining marks"):
            board.teams.add("beta", [name])
    assert board.teams.add("al\u0301\u0302\u0303\u0304pha", []) == []  # four: a name


def _create_in_process(comp, url, name, barrier, queue):
    barrier.wait()
    try:
        Board(PreparedCompetition.open(comp), url=url).teams.add(name, [])
        queue.put(("ok", name))
    except RuleError as e:
        queue.put(("refused", str(e)))
    except Exception as e:  # reported to the test, which fails on it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_concurrent_lookalikes_make_one_team(demo_dirs, tmp_path, store_url):
    comp = make_comp(demo_dirs, tmp_path)
    board_of(comp, store_url)
    names = ["Owls", *LOOKALIKES]
    ctx = clean_context()
    barrier, queue = ctx.Barrier(len(names)), ctx.Queue()
    procs = [ctx.Process(target=_create_in_process, args=(comp, store_url, n, barrier, queue))
             for n in names]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [r for r in results if r[0] == "error"], results
    # One name wins (" owls " is "owls" itself: surrounding spaces are not part of a name).
    winners = {r[1].strip() for r in results if r[0] == "ok"}
    assert len(winners) == 1, results
    assert sum(r[0] == "refused" for r in results) >= len(names) - 2, results
    assert [t["team"] for t in board_of(comp, store_url).teams.overview()] == [*winners]


def test_an_existing_store_gets_name_keys(demo_dirs, tmp_path, store_url):
    """A store made before names were folded: its teams get keys (look-alikes made before
    keep working by their exact names) and new look-alikes are refused."""
    comp = make_comp(demo_dirs, tmp_path)
    url = db.store_url(comp, store_url)
    old = MetaData()
    old_teams = Table("teams", old, Column("id", Integer, primary_key=True),
                      Column("name", String(200), nullable=False, unique=True),
                      Column("created_at", DateTime, nullable=False),
                      Column("token_sha256", String(64), unique=True),
                      Column("baseline", Boolean, nullable=False))
    engine = create_engine(url)
    old.create_all(engine)
    with engine.begin() as conn:
        for name in ("Owls", "owls", "Larks"):
            conn.execute(insert(old_teams).values(name=name, created_at=DAY1, baseline=False))
    engine.dispose()
    board = board_of(comp, store_url)
    with board.engine.connect() as conn:
        keys = dict(conn.execute(select(teams.c.name, teams.c.name_key)).all())
    assert keys["Owls"] == name_key("Owls") and keys["Larks"] == name_key("Larks")
    assert keys["owls"] and keys["owls"] != keys["Owls"]  # the earlier look-alike: unique
    with pytest.raises(RuleError, match="looks like the existing team 'Owls'"):
        board.teams.add("OWLS", [])
    with board.engine.connect() as conn:
        assert board.teams.id_of(conn, "owls") != board.teams.id_of(conn, "Owls")
    assert board.submissions.submit(variant(comp, tmp_path, 0), "owls").team == "owls"
    with board.engine.connect() as conn:
        assert "ux_teams_name_key" in {ix["name"] for ix in inspect(conn).get_indexes("teams")}
    board_of(comp, store_url)  # opening again changes nothing
    with board.engine.connect() as conn:
        assert dict(conn.execute(select(teams.c.name, teams.c.name_key)).all()) == keys


def test_team_lookalikes_from_the_cli(demo_dirs, tmp_path, capsys):
    comp = make_comp(demo_dirs, tmp_path)
    assert run_cli(["team", "add", comp, "Owls", "--no-token"], capsys)[0] == 0
    code, _, err = run_cli(["team", "add", comp, "ｏｗｌｓ", "--no-token"], capsys)
    assert code == 2 and "looks like the existing team 'Owls'" in err
    code, _, err = run_cli(["submit", comp, variant(comp, tmp_path, 0), "--team", "owls"],
                           capsys)
    assert code == 2 and "'Owls'" in err and "Traceback" not in err


# --- sessions: nothing kept of a revoked one ---------------------------------------------

def test_a_revoked_session_leaves_no_row_in_the_store(demo_dirs, tmp_path, store_url):
    from competition.board.sessions import MAX_LIVE_PER_TOKEN, Sessions, session_hash

    board = board_of(make_comp(demo_dirs, tmp_path), store_url)
    sessions = Sessions(board.ctx, board.teams)
    token = board.teams.issue_token("owls")

    def stored() -> set[str]:
        with board.engine.connect() as conn:
            return set(conn.execute(select(sessions_table.c.id_sha256)).scalars())

    kept, gone = sessions.open(token)[0], sessions.open(token)[0]
    assert sessions.revoke(gone) and sessions.get(gone) is None and not sessions.revoke(gone)
    assert stored() == {session_hash(kept)}
    # Past the number of live sessions one token may have, the oldest are deleted.
    newer = [sessions.open(token)[0] for _ in range(MAX_LIVE_PER_TOKEN + 2)]
    assert stored() == {session_hash(i) for i in newer[2:]}
    # A row a store from before this change kept as revoked: never valid, deleted at the
    # next sign-in.
    with board.engine.begin() as conn:
        conn.execute(sessions_table.update().where(
            sessions_table.c.id_sha256 == session_hash(newer[-1])).values(revoked_at=DAY1))
    assert sessions.get(newer[-1]) is None
    latest = sessions.open(token)[0]
    assert session_hash(newer[-1]) not in stored() and session_hash(latest) in stored()


# --- 5. messages --------------------------------------------------------------------------

def test_messages_are_capped_before_anything_is_stored(demo_dirs, tmp_path, store_url,
                                                       capsys, monkeypatch):
    comp = make_comp(demo_dirs, tmp_path)
    board = board_of(comp, store_url)
    for message, error in (("m" * 1001, "1001 characters long; at most 1000"),
                           ("m" * 900_000, "900000 characters"),
                           ("a\x00b", "U+0000")):
        with pytest.raises(RuleError, match=re.escape(error)):
            board.submissions.submit(variant(comp, tmp_path, 0), "owls", message)
    assert count(board, submissions) == count(board, uploads) == count(board, teams) == 0
    assert kept_files(comp) == []
    note = "line one\n\tline two: " + "m" * 980
    assert len(note) == 1000
    kept = board.submissions.submit(variant(comp, tmp_path, 0), "owls", note)
    assert board.submissions.get(kept.id)["message"] == note
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    code, _, err = run_cli(["submit", comp, variant(comp, tmp_path, 1), "--team", "owls",
                            "--message", "m" * 2000], capsys)
    assert code == 2 and "at most 1000" in err
    small = make_comp(demo_dirs, tmp_path / "small", max_message_chars=10)
    with pytest.raises(RuleError, match="at most 10"):
        board_of(small, None).submissions.submit(variant(small, tmp_path, 0), "owls", "m" * 11)


# --- 6. the copy streams ------------------------------------------------------------------

def test_staging_streams_a_large_file_in_bounded_memory(tmp_path):
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(64):
            f.write(block)
            digest.update(block)
    tracemalloc.start()
    try:
        staged = stage_file(tmp_path / "comp", SubmissionFile(big, Limits(max_bytes=1 << 30)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert staged.sha256 == digest.hexdigest()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while copying 64 MiB"
    rel = staged.keep(".bin")
    assert (tmp_path / "comp" / rel).stat().st_size == 64 << 20
    assert not list((tmp_path / "comp" / FILES_DIR).glob(".incoming.*"))
