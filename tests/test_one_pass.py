"""One scoring pass per file (issue 31): the public split's details come from the pass that gave
the score, equal to scoring the split alone; logging owed later never scores again."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import inspect, select

from competition.board import scorer_process
from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.queue import Queue, finish_claim
from competition.board.scoring import Scorer
from competition.board.store import db, migrations
from competition.board.store.schema import submissions, tracking_payloads
from competition.errors import StoreVersionError
from competition.formats import em_tiff
from tests.conftest import prepare_with_store

SMALL_TOMOGRAPHY = "56x48x40,chunks=32:24:16"  # as tests/test_tomography.py prepares it
TASKS = ["demo-nuclei", "demo-em", "demo-landmarks", "demo-mri", "demo-tomography"]


@pytest.fixture(scope="module")
def volumetric_demos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("one-pass")
    return {"demo-mri": prepare_with_store("demo-mri", root / "demo-mri", seed=0),
            "demo-tomography": prepare_with_store("demo-tomography", root / "demo-tomography",
                                                  seed=0, synthetic=SMALL_TOMOGRAPHY)}


@pytest.fixture
def demo(request, demo_dirs, volumetric_demos) -> PreparedCompetition:
    kind = request.param
    return PreparedCompetition.open({**demo_dirs, **volumetric_demos}[kind])


def naive_file(comp: PreparedCompetition, folder: Path) -> Path:
    path = folder / f"naive{comp.task.submission_suffix}"
    path.write_bytes(comp.task.naive_submission(comp.root / "public"))
    return path


def exactly_equal(a: Any, b: Any) -> bool:
    """Equal to the bit (NaN equal to NaN, as a field may be NaN on both sides)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(exactly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(exactly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        return (math.isnan(a) and math.isnan(b)) or float(a) == float(b)
    return bool(type(a) is type(b) and a == b)


@pytest.mark.parametrize("demo", TASKS, indirect=True)
def test_each_split_of_one_pass_equals_scoring_the_split_alone(demo, tmp_path):
    """Fields, public/private and item rows of each split, taken from the whole pass, equal
    exactly (floating-point equal) what `only=` gives by scoring that split alone."""
    scorer = Scorer.load(demo)
    submission = demo.submission(naive_file(demo, tmp_path))
    whole = scorer.score(submission)
    assert whole.public is not None and whole.private is not None
    for usage in ("Public", "Private"):
        split = whole.of_usage(usage)
        alone = scorer.score(submission, only=usage)
        assert split is not None
        assert exactly_equal(split.fields, alone.fields), usage
        assert exactly_equal(split.items, alone.items), usage
        assert exactly_equal([split.score, split.public, split.private],
                             [alone.score, alone.public, alone.private]), usage
        assert {it["usage"] for it in split.items} == {usage}
        assert not exactly_equal(split.fields, whole.fields)  # a split, not the whole
    # The split's score is the split's own, which the whole pass reports too.
    assert whole.of_usage("Public").score == whole.public  # type: ignore[union-attr]
    assert whole.of_usage("Private").score == whole.private  # type: ignore[union-attr]


def em_stack(comp: PreparedCompetition, binary_public: bool, folder: Path) -> Path:
    """A probability stack, binary on the public slices only when `binary_public`: a split
    that `only=` would score at th = 0 alone while the whole file is scored at every
    threshold."""
    solution = comp.load_solution()
    labels = solution.labels.astype(np.float32) / 255
    rng = np.random.default_rng(3)
    proposal = np.clip(labels + rng.normal(0, 0.3, labels.shape), 0, 1).astype(np.float32)
    if binary_public:
        for z, usage in enumerate(solution.usage):
            if usage == "Public":
                proposal[z] = proposal[z] > 0.5
    path = folder / "stack.tif"
    path.write_bytes(em_tiff.write_stack(proposal))
    return path


@pytest.mark.parametrize("binary_public", [False, True])
def test_em_split_thresholds_follow_only(demo_dirs, tmp_path, binary_public):
    comp = PreparedCompetition.open(demo_dirs["demo-em"])
    scorer = Scorer.load(comp)
    submission = comp.submission(em_stack(comp, binary_public, tmp_path))
    whole = scorer.score(submission)
    assert len(whole.fields["thresholds"]) == 11  # not binary as a whole
    split = whole.of_usage("Public")
    alone = scorer.score(submission, only="Public")
    assert split is not None and exactly_equal(split.fields, alone.fields)
    assert len(split.fields["thresholds"]) == (1 if binary_public else 11)


@pytest.mark.parametrize("demo", TASKS, indirect=True)
def test_score_file_decodes_once_and_carries_both_splits(demo, tmp_path, monkeypatch):
    """The board's scorer scores a file once: the public details are those of `only="Public"`
    and the whole hidden split's are the score's."""
    path = naive_file(demo, tmp_path)
    scorer = Scorer.load(demo)
    expected_public = scorer.score(demo.submission(path), only="Public").fields
    expected_all = scorer.score(demo.submission(path)).fields
    calls = []
    original = Scorer.score

    def counted(self: Scorer, submission: Any, only: str | None = None) -> Any:
        calls.append(only)
        return original(self, submission, only)

    monkeypatch.setattr(Scorer, "score", counted)
    payload = scorer_process.score_file(str(demo.root), str(path), path.name, details=True)
    assert calls == [None]
    assert payload["status"] == "scored"
    assert payload["details"]["public"] == json.loads(json.dumps(
        scorer_process.jsonable(expected_public)))
    assert payload["details"]["all"] == json.loads(json.dumps(
        scorer_process.jsonable(expected_all)))
    assert {row["usage"] for row in payload["rows"]} == {"Public", "Private"}


def test_a_task_without_split_state_has_its_public_split_scored_again(demo_dirs, tmp_path,
                                                                      monkeypatch):
    """A plugin whose results carry no `subset` still gets its public details (scored
    alone, as before)."""
    comp = PreparedCompetition.open(demo_dirs["demo-landmarks"])
    path = naive_file(comp, tmp_path)
    original = Scorer.score
    calls = []

    def without_subset(self: Scorer, submission: Any, only: str | None = None) -> Any:
        calls.append(only)
        result = original(self, submission, only)
        result.subset = None
        return result

    monkeypatch.setattr(Scorer, "score", without_subset)
    payload = scorer_process.score_file(str(comp.root), str(path), path.name, details=True)
    assert calls == [None, "Public"]
    assert payload["details"]["public"]["n_specimens"] < payload["details"]["all"]["n_specimens"]


def test_owed_logging_logs_the_kept_details_without_scoring(demo_dirs, tmp_path, monkeypatch,
                                                            store_url):
    """A job that died after its commit leaves its logging owed: `track_pending` logs the
    details and rows kept with the result (public ones only for participants), never
    scoring the file again, and drops them once logged."""
    from tests.test_jobs import demo_copy, variants
    from tests.test_tracking import EMBEDDED, runs_of, switch_on

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp, url=store_url)
    sid = board.submissions.submit(variants(comp, tmp_path, 1)[0], "owls", queue=True).id
    (claim,) = Queue(board.ctx, "host:1").claim(1)
    result = board.submissions.score_stored(comp.root / claim.file_path, claim.file_name)
    with db.write(board.engine) as conn:  # the job's commit, then its worker dies
        assert finish_claim(conn, claim, result)
        board.submissions.record(conn, sid, result, reason="submit")
    with db.read(board.engine) as conn:
        kept = conn.execute(select(tracking_payloads.c.payload)
                            .where(tracking_payloads.c.submission_id == sid)).scalar_one()
    assert json.loads(kept)["details"] == json.loads(json.dumps(result.details))

    def no_scoring(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("owed logging scored the file again")

    monkeypatch.setattr(board.submissions, "score_stored", no_scoring)
    monkeypatch.setattr(scorer_process.ChildScorer, "score", no_scoring)
    assert board.submissions.track_pending(sid)
    assert not board.submissions.get(sid)["tracking_pending"]
    with db.read(board.engine) as conn:
        assert conn.execute(select(tracking_payloads)).first() is None  # dropped once logged
    (public_run,) = runs_of(config, "participants", comp, sid)[1]
    (private_run,) = runs_of(config, "organizers", comp, sid)[1]
    n_public = result.details["public"]["n_images"]
    assert public_run.data.metrics["public.n_images"] == n_public
    assert not any(k.startswith("all.") or "private" in k for k in public_run.data.metrics)
    assert private_run.data.metrics["all.n_images"] == result.details["all"]["n_images"]
    assert private_run.data.metrics["all.n_images"] > n_public


def test_rescoring_and_submitting_score_each_file_once(demo_dirs, tmp_path, monkeypatch):
    """With tracking on (the details wanted), a submission and a rescore score each file in
    one pass: no split is scored alone."""
    from tests.test_jobs import demo_copy, variants
    from tests.test_tracking import EMBEDDED, switch_on

    switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    calls = tmp_path / "calls.txt"
    original = Scorer.score

    def noted(self: Scorer, submission: Any, only: str | None = None) -> Any:
        with calls.open("a") as f:  # the scoring child is a fork: a file outlives it
            f.write(f"{only}\n")
        return original(self, submission, only)

    monkeypatch.setattr(Scorer, "score", noted)
    comp = demo_copy(demo_dirs, tmp_path)
    board = Board(comp)
    for path in variants(comp, tmp_path, 2):
        assert board.submissions.submit(path, "owls").status == "scored"
    assert calls.read_text().split() == ["None"] * 2
    board.rescoring.rescore()
    assert calls.read_text().split() == ["None"] * 4
    assert not any(board.submissions.get(k)["tracking_pending"] for k in (1, 2))


def test_an_older_store_gets_the_payload_table(tmp_path):
    """A store made before payloads were kept (and before schema versions) is refused until
    `competition migrate` gives it their table; opening it changes nothing."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = db.make_engine(url)
    with engine.begin() as conn:
        # The baseline (0001) without payloads: every later revision's tables came after
        # payloads, so such a store had none of them either.
        migrations._alembic(conn, "upgrade", "0001")
        conn.exec_driver_sql("DROP TABLE tracking_payloads")
        conn.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
    engine.dispose()
    engine = db.make_engine(url)
    with pytest.raises(StoreVersionError, match="competition migrate"):
        migrations.check(engine)
    assert not inspect(engine).has_table("tracking_payloads")
    assert migrations.upgrade(url) == (None, migrations.HEAD)
    migrations.check(engine)
    assert inspect(engine).has_table("tracking_payloads")
    assert inspect(engine).has_table("code_runs")
    with engine.connect() as conn:
        assert conn.execute(select(submissions.c.id)).first() is None
