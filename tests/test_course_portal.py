"""A course portal: several competitions served by one app (issue 28, item 1)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient

from competition.board.board import Board
from competition.board.course import course_members
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionDirError
from competition.interfaces.web.app import create_app
from competition.interfaces.web.course import create_course_app
from tests.test_bad_input import run_cli
from tests.test_roster import sheet_rows, write_roster
from tests.test_web import form_token

SAMPLES = {"nuclei": "sample_submission.csv", "em": "sample_submission.tif"}


def set_rules(root: Path, **rules) -> None:
    config = yaml.safe_load((root / "competition.yaml").read_text())
    config["rules"].update(rules)
    (root / "competition.yaml").write_text(yaml.safe_dump(config))


class Course:
    """Two competitions (nuclei and em) in one course folder, with a team token each, an
    organizer token each, and a roster of two students imported into both."""

    def __init__(self, demo_dirs, tmp_path: Path, capsys):
        self.folder = tmp_path / "course"
        self.dirs = {"nuclei": Path(shutil.copytree(demo_dirs["demo-nuclei"],
                                                    self.folder / "nuclei")),
                     "em": Path(shutil.copytree(demo_dirs["demo-em"], self.folder / "em"))}
        self.boards = {slug: Board(PreparedCompetition.open(d)) for slug, d in self.dirs.items()}
        self.team_tokens = {slug: b.teams.issue_token(f"{slug}-team")
                            for slug, b in self.boards.items()}
        self.organizer = {slug: b.teams.issue_organizer_token()
                          for slug, b in self.boards.items()}
        roster = write_roster(tmp_path / "roster.csv", [
            {"name": "Ana", "id": "a1", "team": "owls"},
            {"name": "Bo", "id": "b1", "team": "bats"}])
        code, out, err = run_cli(["roster", "import", self.dirs["nuclei"], self.dirs["em"],
                                  roster, "--out", tmp_path / "tokens.csv"], capsys)
        assert code == 0, err
        self.students = {r["name"]: r["token"] for r in sheet_rows(tmp_path / "tokens.csv")}
        self.app = create_course_app(course_members([self.folder]))
        self.client = TestClient(self.app)

    def sample(self, slug: str) -> tuple[str, bytes]:
        name = SAMPLES[slug]
        return name, (self.dirs[slug] / "public" / name).read_bytes()

    def sign_in(self, client: TestClient, token: str):
        page = client.get("/login")
        return client.post("/login", data={"token": token, "csrf_token": form_token(page.text)},
                           follow_redirects=False)


@pytest.fixture
def course(demo_dirs, tmp_path, capsys) -> Course:
    return Course(demo_dirs, tmp_path, capsys)


def test_home_lists_the_competitions_by_status(demo_dirs, tmp_path, capsys):
    folder = tmp_path / "c"
    for slug, status in (("a", {}), ("b", {"deadline": "2000-01-01T00:00:00"}),
                         ("c", {"start": "2999-01-01T00:00:00"})):
        root = Path(shutil.copytree(demo_dirs["demo-nuclei"], folder / slug))
        config = yaml.safe_load((root / "competition.yaml").read_text())
        config["id"] = f"course-{slug}"  # copies of one demo: each needs its own id
        config["title"] = f"Competition {slug.upper()}"
        config["rules"].update(status)
        (root / "competition.yaml").write_text(yaml.safe_dump(config))
    with TestClient(create_course_app(course_members([folder]))) as c:
        home = c.get("/")
        assert home.status_code == 200
        sections = {s: re.search(rf'<section id="{s}">(.*?)</section>', home.text, re.S).group(1)
                    for s in ("open", "upcoming", "closed")}
        assert 'href="/c/a/"' in sections["open"] and "Competition A" in sections["open"]
        assert 'href="/c/b/"' in sections["closed"]
        assert 'href="/c/c/"' in sections["upcoming"]
        listed = c.get("/api/competitions").json()
        assert [(x["slug"], x["status"], x["url"]) for x in listed] == [
            ("a", "open", "/c/a/"), ("b", "closed", "/c/b/"), ("c", "upcoming", "/c/c/")]
        assert listed[1]["deadline"] == "2000-01-01T00:00:00Z" and listed[1]["start"] is None
        assert listed[2]["start"] == "2999-01-01T00:00:00Z"
        assert set(listed[0]) == {"id", "slug", "title", "kind", "status", "start", "deadline",
                                  "url"}
        assert listed[0]["id"] == "course-a" and listed[0]["kind"] == "nuclei"
        # Each competition works under its prefix (its own API included).
        assert c.get("/c/b/api/leaderboard").status_code == 200
        assert c.get("/c/b", follow_redirects=False).headers["location"] == "/c/b/"
        missing = c.get("/c/nope/x", headers={"Accept": "application/json"})
        assert missing.status_code == 404 and "no competition 'nope'" in missing.json()["detail"]


def test_single_competition_lists_itself_at_the_root(demo_dirs, tmp_path):
    root = Path(shutil.copytree(demo_dirs["demo-em"], tmp_path / "em"))
    listed = TestClient(create_app(root)).get("/api/competitions").json()
    assert len(listed) == 1
    assert listed[0]["slug"] == "em" and listed[0]["url"] == "/"
    assert listed[0]["status"] == "open"
    assert listed[0]["kind"] == PreparedCompetition.open(root).config.task


def test_one_roster_token_signs_in_once_and_submits_to_both(course):
    c = course.client
    with c:
        signed = course.sign_in(c, course.students["Ana"])
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        home = c.get("/")
        assert home.text.count("signed in as team owls") == 2
        for slug in ("nuclei", "em"):
            page = c.get(f"/c/{slug}/submit")
            assert page.status_code == 200, (slug, page.text)
            name, data = course.sample(slug)
            done = c.post(f"/c/{slug}/submit", files={"file": (name, data)},
                          data={"csrf_token": form_token(page.text)})
            assert done.status_code == 200, (slug, done.text)
            mine = course.boards[slug].submissions.of_team("owls")
            assert len(mine) == 1 and mine[0].status == "scored", slug
        # The other competition's store got nothing of it.
        assert len(course.boards["nuclei"].submissions.all()) == 1
        # Signing out ends every session.
        page = c.get("/c/em/submissions")
        assert 'action="/logout"' in page.text
        out = c.post("/logout", data={"csrf_token": form_token(page.text)},
                     follow_redirects=False)
        assert out.status_code == 303
        for slug in ("nuclei", "em"):
            r = c.get(f"/c/{slug}/submissions", headers={"Accept": "text/html"},
                      follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login", slug


def test_a_competitions_token_and_session_do_nothing_in_another(course):
    c = course.client
    nuclei = {"Authorization": f"Bearer {course.team_tokens['nuclei']}"}
    assert c.get("/c/nuclei/api/submissions", headers=nuclei).status_code == 200
    assert c.get("/c/em/api/submissions", headers=nuclei).status_code == 401
    name, data = course.sample("em")
    assert c.post("/c/em/api/submissions", headers=nuclei,
                  files={"file": (name, data)}).status_code == 401
    organizer = {"Authorization": f"Bearer {course.organizer['nuclei']}"}
    assert c.get("/c/nuclei/api/organizer/submissions", headers=organizer).status_code == 200
    assert c.get("/c/em/api/organizer/submissions", headers=organizer).status_code == 401

    # Signed in with nuclei's team token: a session of nuclei only.
    assert course.sign_in(c, course.team_tokens["nuclei"]).status_code == 303
    assert c.get("/c/nuclei/submissions").status_code == 200
    assert c.get("/c/em/submissions", headers={"Accept": "text/html"},
                 follow_redirects=False).status_code == 303
    cookie = c.cookies.get("competition_session-nuclei")
    assert cookie and c.cookies.get("competition_session-em") is None
    # Its cookie sent under em's name is no session of em.
    other = TestClient(course.app)
    other.cookies.set("competition_session-em", cookie)
    assert other.get("/c/em/api/submissions").status_code == 401
    assert other.get("/c/em/submissions", headers={"Accept": "text/html"},
                     follow_redirects=False).status_code == 303
    # Nor does a competition's own sign-in page know another's token.
    page = other.get("/c/em/login")
    r = other.post("/c/em/login", data={"token": course.team_tokens["nuclei"],
                                        "csrf_token": form_token(page.text)})
    assert r.status_code == 401


def test_unknown_token_and_csrf_are_refused_at_the_course_sign_in(course):
    c = course.client
    refused = course.sign_in(c, "not-a-token")
    assert refused.status_code == 401 and "unknown token" in refused.text
    page = c.get("/login")
    bad = c.post("/login", data={"token": course.students["Ana"], "csrf_token": "forged"})
    assert bad.status_code == 403 and "expired" in bad.text
    foreign = c.post("/login", data={"token": course.students["Ana"],
                                     "csrf_token": form_token(page.text)},
                     headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    # The course's own routes are guarded as a competition's are.
    big = c.post("/login", content=b"token=" + b"x" * 100_000,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    assert c.get("/" + "a" * 3000).status_code == 414
    assert c.get("/c/nuclei/%00").status_code == 400


def test_course_sign_in_is_rate_limited(demo_dirs, tmp_path, capsys):
    course = Course(demo_dirs, tmp_path, capsys)
    for d in course.dirs.values():
        config = yaml.safe_load((d / "competition.yaml").read_text())
        config.setdefault("portal", {})["sign_in_failures_per_address"] = 3
        (d / "competition.yaml").write_text(yaml.safe_dump(config))
    c = TestClient(create_course_app(course_members([course.folder])))
    codes = [course.sign_in(c, f"guess-{k}").status_code for k in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    # A known token still signs in.
    assert course.sign_in(c, course.students["Bo"]).status_code == 303


def test_a_competitions_own_sign_in_keeps_to_the_courses_strictest_limits(demo_dirs, tmp_path,
                                                                         capsys):
    """A roster token is valid in every competition: guessing at the most lenient one's own
    sign-in (or API) would find tokens for all, so each keeps to the strictest limits."""
    course = Course(demo_dirs, tmp_path, capsys)
    for slug, limit in (("nuclei", 3), ("em", 1000)):
        config = yaml.safe_load((course.dirs[slug] / "competition.yaml").read_text())
        config.setdefault("portal", {})["sign_in_failures_per_address"] = limit
        (course.dirs[slug] / "competition.yaml").write_text(yaml.safe_dump(config))
    c = TestClient(create_course_app(course_members([course.folder])))
    page = c.get("/c/em/login")
    codes = [c.post("/c/em/login", data={"token": f"guess-{k}",
                                         "csrf_token": form_token(page.text)}).status_code
             for k in range(4)]
    assert codes == [401, 401, 401, 429]
    assert c.get("/c/em/api/submissions",
                 headers={"Authorization": "Bearer guess-9"}).status_code == 429


def test_duplicate_folder_names_and_ids_are_refused(demo_dirs, tmp_path, capsys):
    a = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "one" / "nuclei"))
    b = Path(shutil.copytree(demo_dirs["demo-em"], tmp_path / "two" / "nuclei"))
    with pytest.raises(CompetitionDirError) as e:
        course_members([a, b])
    assert str(a) in str(e.value) and str(b) in str(e.value) and "'nuclei'" in str(e.value)
    copy = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "copy"))
    with pytest.raises(CompetitionDirError) as e:
        create_course_app(course_members([a, copy]))
    assert str(a) in str(e.value) and str(copy) in str(e.value) and "same competition id" \
        in str(e.value)
    with pytest.raises(CompetitionDirError, match="neither a prepared competition"):
        course_members([tmp_path / "copy" / "public"])
    # The command line says so, and serves nothing.
    code, _, err = run_cli(["serve", a, b], capsys)
    assert code == 2 and "folder name 'nuclei'" in err


LINK = re.compile(r'(?:href|action|src)="([^"]*)"')


@pytest.mark.parametrize("slug", ["nuclei", "em"])
def test_every_link_stays_under_the_prefix(course, slug):
    c = course.client
    organizer = TestClient(course.app)
    assert course.sign_in(c, course.team_tokens[slug]).status_code == 303
    assert course.sign_in(organizer, course.organizer[slug]).status_code == 303
    student = TestClient(course.app)
    assert course.sign_in(student, course.students["Ana"]).status_code == 303
    name, data = course.sample(slug)
    auth = {"Authorization": f"Bearer {course.team_tokens[slug]}"}
    made = c.post(f"/c/{slug}/api/submissions", params={"wait": 60}, headers=auth,
                  files={"file": (name, data)})
    assert made.headers["location"] == f"/c/{slug}/api/submissions/{made.json()['id']}"
    folders = [p.name for p in (course.dirs[slug] / "public").iterdir() if p.is_dir()]
    checked = 0
    for client, paths in ((c, ("/", "/submit", "/submissions", "/leaderboard",
                               "/leaderboard/late", "/files/README.md", "/login",
                               "/files/no-such-file", *(f"/files/{f}/" for f in folders))),
                          (student, ("/team",)),
                          (organizer, ("/organizer", "/leaderboard/private", "/organizer/rules",
                                       "/organizer/description"))):
        for path in paths:
            r = client.get(f"/c/{slug}{path}")
            assert r.status_code == (404 if "no-such" in path else 200), path
            if "text/html" not in r.headers["content-type"]:
                continue
            for link in LINK.findall(r.text):
                if urlsplit(link).scheme or link.startswith("#"):
                    continue  # another site, or this page
                checked += 1
                assert link.startswith(f"/c/{slug}/") or link in ("/login", "/logout", "/"), \
                    (path, link)
    assert checked > 20
    # Redirects too: the 401 of a page goes to the course's sign-in, a selection back to
    # the competition's submissions.
    anonymous = TestClient(course.app)
    r = anonymous.get(f"/c/{slug}/submit", headers={"Accept": "text/html"},
                      follow_redirects=False)
    assert r.headers["location"] == "/login"
    page = c.get(f"/c/{slug}/submissions")
    selected = c.post(f"/c/{slug}/submissions/{made.json()['id']}/select",
                      data={"csrf_token": form_token(page.text)}, follow_redirects=False)
    assert selected.status_code == 303, selected.text
    assert selected.headers["location"] == f"/c/{slug}/submissions"


def test_the_competitions_share_one_runner(course):
    portals = course.app.state.course.portals
    assert len({id(p.runner.shared) for p in portals.values()}) == 1
    assert all(not p.own_runner for p in portals.values())


def test_a_shared_runner_never_hands_out_more_than_its_workers():
    import threading

    from competition.jobs.runners import SharedRunner, ThreadRunner

    shared = SharedRunner(ThreadRunner(2))
    a, b = shared.share(), shared.share()
    release = [threading.Event(), threading.Event()]
    jobs = [a.submit(release[k].wait, 10, key=f"j{k}") for k in range(2)]
    assert a.capacity() == 2 and b.capacity() == 0  # a's own running jobs are a's to count
    # b has jobs waiting: a may keep only an even part of the workers, so the worker a's
    # first job frees goes to b, however soon a asks.
    b.wanting(True)
    assert a.capacity() == 1
    release[0].set()
    jobs[0].result(timeout=10)
    assert a.capacity() - a.busy() == 0 and b.capacity() == 1
    b.wanting(False)
    release[1].set()
    jobs[1].result(timeout=10)
    assert a.capacity() == 2 and b.capacity() == 2
    b.close()  # a share closes nothing
    assert b.submit(lambda: 1, key="x").result(timeout=10) == 1
    shared.close()


def test_the_course_reads_rules_changed_since(course):
    c = course.client
    assert {x["slug"]: x["status"] for x in c.get("/api/competitions").json()} == \
        {"em": "open", "nuclei": "open"}
    set_rules(course.dirs["em"], deadline="2000-01-01T00:00:00")
    listed = {x["slug"]: x for x in c.get("/api/competitions").json()}
    assert listed["em"]["status"] == "closed" and listed["nuclei"]["status"] == "open"
    assert 'href="/c/em/"' in re.search(r'<section id="closed">(.*?)</section>',
                                        c.get("/").text, re.S).group(1)


def test_the_courses_signed_in_pages_are_kept_by_no_cache(course):
    c = course.client
    assert "no-store" not in c.get("/").headers.get("cache-control", "")
    assert course.sign_in(c, course.students["Ana"]).status_code == 303
    assert c.get("/").headers["cache-control"] == "no-store"
    assert c.get("/c/em/submissions").headers["cache-control"] == "no-store"
