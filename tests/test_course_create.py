"""Creating a competition from a course's portal (issue 28, item 4): a kind, a source from
an allowed folder or an uploaded zip, prepared as a job, then served live."""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from competition.board.board import Board
from competition.board.course import course_folder, course_members
from competition.board.prepared import PreparedCompetition
from competition.interfaces.web.course import create_course_app
from competition.tasks.nuclei.synthetic import write_nuclei_source
from tests.test_bad_input import run_cli
from tests.test_web import form_token


class Course:
    """A course folder with one competition (nuclei) and a course.yaml whose organizer token
    is `token`; allowed source root `roots` holding a dsb2018-layout folder `dsb`."""

    def __init__(self, demo_dirs, tmp_path: Path, capsys, **limits):
        self.tmp = tmp_path
        self.folder = tmp_path / "course"
        self.nuclei = Path(shutil.copytree(demo_dirs["demo-nuclei"], self.folder / "nuclei"))
        self.roots = tmp_path / "roots"
        write_nuclei_source(self.roots / "dsb", 0)
        code, out, err = run_cli(["organizer-token", "--course", self.folder], capsys)
        assert code == 0, err
        self.token = re.search(r"course organizer token: (\S+)", out).group(1)
        config = yaml.safe_load((self.folder / "course.yaml").read_text())
        config.update(sources=[str(self.roots)], **limits)
        (self.folder / "course.yaml").write_text(yaml.safe_dump(config))
        self.team_token = Board(PreparedCompetition.open(self.nuclei)).teams.issue_token("owls")
        self.app = create_course_app(course_members([self.folder]),
                                     course_dir=course_folder([self.folder]))
        self.client = TestClient(self.app)
        self.bearer = {"Authorization": f"Bearer {self.token}"}

    def api_create(self, zip_bytes: bytes | None = None, headers=None, **fields):
        files = {"source_zip": ("source.zip", zip_bytes)} if zip_bytes is not None else \
            {"source_zip": ("", b"")}  # an empty file input, as a browser sends it
        return self.client.post("/api/organizer/competitions", data=fields, files=files,
                                headers=self.bearer if headers is None else headers)

    def wait(self, job_url: str) -> dict:
        for _ in range(600):
            job = self.client.get(job_url, headers=self.bearer).json()
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job did not end: {job}")


@pytest.fixture
def course(demo_dirs, tmp_path, capsys) -> Course:
    return Course(demo_dirs, tmp_path, capsys)


def sign_in(client: TestClient, token: str):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "csrf_token": form_token(page.text)},
                       follow_redirects=False)


def zipped(folder: Path, top: str = "dsb") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def test_create_from_an_allowed_folder_then_a_student_submits(course):
    c = course.client
    with c:
        signed = sign_in(c, course.token)
        assert signed.status_code == 303 and signed.headers["location"] == "/organizer"
        page = c.get("/organizer")
        assert page.status_code == 200 and 'value="dsb2018"' in page.text
        assert str(course.roots) in page.text
        done = c.post("/organizer/competitions", data={
            "csrf_token": form_token(page.text), "kind": "dsb2018", "slug": "cells",
            "title": "Cells 2026", "source": "dsb", "options": "test_fraction=0.3",
            "deadline": "2999-01-31T23:59:00Z", "rules": "daily_limit=3"},
            files={"source_zip": ("", b"")}, follow_redirects=False)
        assert done.status_code == 303, done.text
        job_page = done.headers["location"]
        assert job_page.startswith("/organizer/jobs/")
        job = course.wait("/api" + job_page)
        assert job["status"] == "done", job
        assert job["url"] == "/c/cells/" and job["fraction"] == 1.0
        final = c.get(job_page).text
        assert 'http-equiv="refresh"' not in final and 'href="/c/cells/"' in final
        # Listed and served, live.
        listed = {x["slug"]: x for x in c.get("/api/competitions").json()}
        assert listed["cells"]["title"] == "Cells 2026" and listed["cells"]["kind"] == "nuclei"
        assert listed["cells"]["deadline"] == "2999-01-31T23:59:00Z"
        assert 'href="/c/cells/"' in c.get("/").text
        comp = PreparedCompetition.open(course.folder / "cells")
        assert comp.rules.daily_limit == 3
        assert not any(p.name.startswith(".") and p.name != ".creating"
                       for p in course.folder.iterdir())
        # The course organizer is the new competition's organizer.
        assert c.get("/c/cells/api/organizer/submissions", headers=course.bearer).status_code \
            == 200
        # A student signs in and submits.
        token = Board(comp).teams.issue_token("bats")
        student = TestClient(course.app)
        assert sign_in(student, token).status_code == 303
        submit = student.get("/c/cells/submit")
        assert submit.status_code == 200
        sample = (course.folder / "cells" / "public" / "sample_submission.csv").read_bytes()
        sent = student.post("/c/cells/submit", files={"file": ("s.csv", sample)},
                            data={"csrf_token": form_token(submit.text)})
        assert sent.status_code == 200, sent.text
        mine = Board(comp).submissions.of_team("bats")
        assert len(mine) == 1 and mine[0].status == "scored"
        # The slug is now taken.
        again = course.api_create(kind="demo-nuclei", slug="cells")
        assert again.status_code == 409 and "slug" in again.json()["detail"]


def test_create_from_an_uploaded_zip(course):
    with course.client:
        sent = course.api_create(zipped(course.roots / "dsb"), kind="dsb2018", slug="zipped",
                                 title="From a zip")
        assert sent.status_code == 202, sent.text
        assert sent.headers["location"] == sent.json()["job_url"]
        job = course.wait(sent.json()["job_url"])
        assert job["status"] == "done", job
        assert course.client.get("/c/zipped/api/leaderboard").status_code == 200
        assert not (course.folder / ".creating").exists() or \
            not any((course.folder / ".creating").iterdir())


def test_a_synthetic_kind_needs_no_source(course):
    with course.client:
        sent = course.api_create(kind="demo-nuclei", slug="demo")
        assert sent.status_code == 202, sent.text
        assert course.wait(sent.json()["job_url"])["status"] == "done"
        with_source = course.api_create(kind="demo-nuclei", slug="demo2", source="dsb")
        assert with_source.status_code == 422 and "source" in with_source.json()["detail"]


def test_sources_outside_the_roots_are_refused(course, tmp_path):
    outside = tmp_path / "outside"
    write_nuclei_source(outside, 0)
    os.symlink(outside, course.roots / "escape")
    cases = {str(outside): 403, "escape": 403, "../outside": 400, "dsb/../../outside": 400,
             str(course.roots / "dsb" / ".." / ".." / "outside"): 400, "nope": 404}
    for source, status in cases.items():
        r = course.api_create(kind="dsb2018", slug="x", source=source)
        assert r.status_code == status, (source, r.text)
        detail = r.json()["detail"]
        assert detail.startswith("source:") and str(course.roots) in detail, detail
    assert not (course.folder / "x").exists()


def test_bad_fields_are_refused_naming_them(course):
    cases = [({"kind": "nope", "slug": "a"}, 422, "kind:"),
             ({"kind": "demo-nuclei", "slug": "../a"}, 422, "slug:"),
             ({"kind": "demo-nuclei", "slug": ".hidden"}, 422, "slug:"),
             ({"kind": "demo-nuclei", "slug": "nuclei"}, 409, "slug:"),  # a competition
             ({"kind": "demo-nuclei", "slug": "a", "options": "bogus=1"}, 422, "options:"),
             ({"kind": "dsb2018", "slug": "a", "source": "dsb",
               "options": "holdout=mirrored\nmirror=/etc"}, 422, "options:"),
             ({"kind": "demo-nuclei", "slug": "a", "deadline": "soon"}, 422, "deadline:"),
             ({"kind": "demo-nuclei", "slug": "a", "rules": "daily_limitt=3"}, 422, "rules:"),
             ({"kind": "dsb2018", "slug": "a"}, 422, "source:")]
    (course.folder / "taken").mkdir()
    cases.append(({"kind": "demo-nuclei", "slug": "taken"}, 409, "slug:"))
    for fields, status, named in cases:
        r = course.api_create(**fields)
        assert r.status_code == status, (fields, r.text)
        assert r.json()["detail"].startswith(named), (fields, r.text)
    assert sorted(p.name for p in course.folder.iterdir() if not p.name.startswith(".")) == \
        ["course.yaml", "nuclei", "taken"]


def _zip(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return buffer.getvalue()


def test_hostile_zips_are_refused(demo_dirs, tmp_path, capsys):
    course = Course(demo_dirs, tmp_path, capsys, max_source_members=5,
                    max_source_upload_mb=0.05)
    cases = {"traversal": _zip([("../evil.txt", b"x", None)]),
             "absolute": _zip([("/tmp/evil.txt", b"x", None)]),
             "link": _zip([("a", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
             "device": _zip([("d", b"", stat.S_IFCHR | 0o600)]),
             "many": _zip([(f"f{k}", b"x", None) for k in range(6)]),
             "not a zip": b"PK but not really"}
    for what, data in cases.items():
        r = course.api_create(data, kind="dsb2018", slug="z")
        assert r.status_code == 422, (what, r.text)
        assert r.json()["detail"].startswith("source_zip:"), (what, r.text)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    first = course.client.post("/api/organizer/competitions", headers=course.bearer,
                               files=[("source_zip", ("s.zip", _zip([("a", b"x", None)]))),
                                      ("kind", (None, "dsb2018")), ("slug", (None, "z"))])
    assert first.status_code == 422 and "after the other fields" in first.json()["detail"]
    big = course.api_create(os.urandom(200_000), kind="dsb2018", slug="z")
    assert big.status_code == 413 and "max_source_upload_mb" in big.json()["detail"]
    assert not (course.folder / "z").exists()
    leftovers = list((course.folder / ".creating").iterdir()) \
        if (course.folder / ".creating").exists() else []
    assert leftovers == []


def test_a_zip_that_fails_to_prepare_names_the_problem_not_server_paths(course):
    with course.client:
        sent = course.api_create(_zip([("readme.txt", b"no images here", None)]),
                                 kind="dsb2018", slug="empty")
        assert sent.status_code == 202, sent.text
        job = course.wait(sent.json()["job_url"])
        assert job["status"] == "failed" and job["error"], job
        assert str(course.folder) not in job["error"] and str(course.tmp) not in job["error"]
        assert not (course.folder / "empty").exists()
        # The slug is free again.
        again = course.api_create(kind="demo-nuclei", slug="empty")
        assert again.status_code == 202


def test_only_the_course_organizer_creates(course):
    c = course.client
    anonymous = c.post("/api/organizer/competitions", data={"kind": "demo-nuclei",
                                                            "slug": "a"},
                       files={"source_zip": ("", b"")})
    assert anonymous.status_code == 401
    assert c.get("/api/organizer/jobs/x").status_code == 401
    assert "/api/organizer/competitions" in c.get("/openapi.json").json()["paths"]
    own_organizer = Board(PreparedCompetition.open(course.nuclei)).teams.issue_organizer_token()
    for token in (course.team_token, own_organizer, "not-a-token"):
        r = course.api_create(headers={"Authorization": f"Bearer {token}"},
                              kind="demo-nuclei", slug="a")
        assert r.status_code == 403, r.text
    # A student's session: forbidden too.
    student = TestClient(course.app)
    assert sign_in(student, course.team_token).status_code == 303
    assert student.get("/organizer", headers={"Accept": "text/html"}).status_code == 403
    assert not (course.folder / "a").exists()


def test_the_form_needs_its_csrf_token(course):
    c = course.client
    assert sign_in(c, course.token).status_code == 303
    for token in (None, "forged"):
        data = {"kind": "demo-nuclei", "slug": "a"}
        if token:
            data["csrf_token"] = token
        r = c.post("/organizer/competitions", data=data, files={"source_zip": ("", b"")})
        assert r.status_code == 403, r.text
    page = c.get("/organizer")
    foreign = c.post("/organizer/competitions", data={
        "kind": "demo-nuclei", "slug": "a", "csrf_token": form_token(page.text)},
        files={"source_zip": ("", b"")}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert not (course.folder / "a").exists()
    # Signing out ends the course organizer's session.
    out = c.post("/logout", data={"csrf_token": form_token(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    gone = c.get("/organizer", headers={"Accept": "text/html"}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/login"
    assert c.get("/api/organizer/jobs/x").status_code == 401


def test_creation_is_off_without_a_course_folder(demo_dirs, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(demo_dirs["demo-nuclei"], folder / "nuclei")
    shutil.copytree(demo_dirs["demo-em"], folder / "em")
    app = create_course_app(course_members([folder / "nuclei", folder / "em"]),
                            course_dir=course_folder([folder / "nuclei", folder / "em"]))
    page = TestClient(app).get("/organizer")
    assert page.status_code == 404 and "competition organizer-token --course" in page.text
    assert course_folder([folder]) is None  # no course.yaml


def test_the_course_token_is_every_competitions_organizer_token(course):
    with course.client as c:
        r = c.get("/c/nuclei/api/organizer/submissions", headers=course.bearer)
        assert r.status_code == 200
        assert sign_in(c, course.token).status_code == 303
        assert c.get("/c/nuclei/organizer").status_code == 200


def test_a_source_folder_linking_outside_the_roots_is_not_read(course, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("ImageId,EncodedPixels\n")
    linked = Path(shutil.copytree(course.roots / "dsb", course.roots / "linked"))
    (linked / "stage1_train_labels.csv").unlink()
    os.symlink(secret, linked / "stage1_train_labels.csv")
    with course.client:
        sent = course.api_create(kind="dsb2018", slug="linked", source="linked")
        assert sent.status_code == 202, sent.text
        job = course.wait(sent.json()["job_url"])
        assert job["status"] == "failed", job
        assert job["error"] == ("source: linked/stage1_train_labels.csv is a link to outside "
                                "the allowed roots; it is not read")
        assert not (course.folder / "linked").exists()


def test_the_job_page_refreshes_itself_until_the_job_ends(course):
    with course.client as c:
        assert sign_in(c, course.token).status_code == 303
        sent = course.api_create(kind="demo-nuclei", slug="slow")
        job_id = sent.json()["id"]
        creator = course.app.state.course.creator
        job = creator.job(job_id)
        course.wait(sent.json()["job_url"])
        job.status, job.stage = "running", "preparing (demo-nuclei)"  # as it looked
        running = c.get(f"/organizer/jobs/{job_id}")
        assert '<meta http-equiv="refresh"' in running.text and "<script" not in running.text
        job.status, job.error = "failed", "source: something named"
        failed = c.get(f"/organizer/jobs/{job_id}")
        assert "http-equiv" not in failed.text and "source: something named" in failed.text
        assert c.get("/organizer/jobs/nope").status_code == 404


def test_a_new_course_token_ends_the_old_ones_sessions(course, capsys):
    c = course.client
    assert sign_in(c, course.token).status_code == 303
    assert c.get("/organizer").status_code == 200
    code, out, err = run_cli(["organizer-token", "--course", course.folder], capsys)
    assert code == 0 and "also the organizer token of nuclei" in out
    gone = c.get("/organizer", headers={"Accept": "text/html"}, follow_redirects=False)
    assert gone.status_code == 303
    assert course.api_create(kind="demo-nuclei", slug="a").status_code == 403
    # The command keeps course.yaml's other settings.
    assert yaml.safe_load((course.folder / "course.yaml").read_text())["sources"] == \
        [str(course.roots)]
    code, out, err = run_cli(["organizer-token"], capsys)
    assert code != 0 and "--course" in err
    code, out, err = run_cli(["organizer-token", "--course", course.nuclei], capsys)
    assert code != 0 and "not a course folder" in err


def test_hidden_folders_are_never_competitions(course):
    # A job's work (or one a killed server left) is staged in a hidden folder.
    shutil.copytree(course.nuclei, course.folder / ".cells.abc.tmp")
    assert [m.slug for m in course_members([course.folder])] == ["nuclei"]
    empty = course.tmp / "empty"
    empty.mkdir()
    (empty / "course.yaml").write_text("sources: [data]\n")
    assert course_members([empty]) == [] and course_folder([empty]) == empty
    app = create_course_app([], course_dir=empty)
    with TestClient(app) as c:
        assert c.get("/api/competitions").json() == []
        assert c.get("/").status_code == 200


def test_a_broken_course_yaml_refuses_creating_and_nothing_else(course):
    with course.client as c:
        (course.folder / "course.yaml").write_text("sources: [a]\nmax_source_members: -1\n")
        assert c.get("/").status_code == 200
        assert c.get("/c/nuclei/api/leaderboard").status_code in (200, 401)
        r = course.api_create(kind="demo-nuclei", slug="a")
        assert r.status_code == 503 and "max_source_members" in r.json()["detail"]
        assert str(course.folder) not in r.json()["detail"]
