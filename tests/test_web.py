"""The course portal: API, pages, authorisation, path security, schema fuzzing, concurrency."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.interfaces.web.app import create_app
from tests.browser import free_port as _free_port  # noqa: F401 (tests import it from here)
from tests.browser import served
from tests.test_bad_input import nuclei_valid


class Portal:
    """A competition with two teams and an organizer, served in-process."""

    def __init__(self, root: Path, portal: dict | None = None, **rules):
        config = yaml.safe_load((root / "competition.yaml").read_text())
        config["rules"].update(rules)
        config.setdefault("portal", {}).update(portal or {})
        (root / "competition.yaml").write_text(yaml.safe_dump(config))
        self.root = root
        board = Board(PreparedCompetition.open(root))
        self.tokens = {team: board.teams.issue_token(team) for team in ("owls", "bats", "moths")}
        self.tokens["organizer"] = board.teams.issue_organizer_token()
        self.app = create_app(root)
        self.client = TestClient(self.app)
        self.sample = (root / "public" / "sample_submission.csv").read_bytes()

    def auth(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def submit(self, who: str, data: bytes, name: str = "sub.csv"):
        return self.client.post("/api/submissions", params={"wait": 60}, headers=self.auth(who),
                                files={"file": (name, data)})

    def variant(self, k: int) -> bytes:
        first_id = self.sample.decode().splitlines()[1].split(",")[0]
        return self.sample + f"{first_id},{k + 1} 1\n".encode()


@pytest.fixture
def portal(demo_dirs, tmp_path) -> Portal:
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    return Portal(root, daily_limit=3)


def test_public_board_is_open_and_everything_else_needs_a_token(portal):
    c = portal.client
    assert c.get("/api/leaderboard").status_code == 200
    assert c.get("/leaderboard").status_code == 200
    for path in ("/api/competition", "/api/submissions", "/api/leaderboard/private",
                 "/api/organizer/submissions", "/api/organizer/grades.csv"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ("/", "/submit", "/submissions", "/organizer", "/files/README.md"):
        r = c.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path


def test_submit_valid_and_invalid(portal):
    bad = portal.submit("owls", b"nonsense\n", "bad.csv")
    assert bad.status_code == 422
    assert bad.json()["status"] == "invalid" and "bad.csv: line 1" in bad.json()["error"]
    good = portal.submit("owls", nuclei_valid(portal.root).encode())
    assert good.status_code == 201
    body = good.json()
    assert body["public_score"] == 1.0 and "private_score" not in body
    assert body["remaining_today"] == 2  # the invalid one did not count
    assert [e["team"] for e in portal.client.get("/api/leaderboard").json()] == ["owls"]
    listing = portal.client.get("/api/submissions", headers=portal.auth("owls")).json()
    assert [r["status"] for r in listing] == ["invalid", "scored"]
    assert all("private_score" not in r for r in listing)


def test_an_empty_upload_is_named_as_sent_never_by_a_server_path(portal):
    api = portal.submit("owls", b"", "x.csv")
    assert api.status_code == 400 and api.json()["detail"] == "x.csv: the file is empty"
    page = portal.client.post("/submit", headers=portal.auth("owls"),
                              files={"file": ("x.csv", b"")})
    assert page.status_code == 400 and "x.csv: the file is empty" in page.text
    assert "competition-upload-" not in page.text


def test_limits_give_clear_refusals(portal, demo_dirs, tmp_path):
    for k in range(3):
        assert portal.submit("owls", portal.variant(k)).status_code == 201
    refused = portal.submit("owls", portal.variant(3))
    assert refused.status_code == 429 and "used its 3 submissions" in refused.json()["detail"]
    page = portal.client.post("/submit", headers=portal.auth("owls"),
                              files={"file": ("x.csv", portal.variant(4))})
    assert page.status_code == 429 and "used its 3 submissions" in page.text
    small = tmp_path / "small"
    shutil.copytree(demo_dirs["demo-nuclei"], small)
    tiny = Portal(small, max_submission_mb=0.0005)
    too_big = tiny.submit("owls", tiny.sample * 40)
    assert too_big.status_code == 413 and "size limit" in too_big.json()["detail"]


def test_teams_are_kept_apart(portal):
    own = portal.submit("owls", portal.variant(0)).json()["id"]
    assert portal.client.get(f"/api/submissions/{own}/file",
                             headers=portal.auth("owls")).content == portal.variant(0)
    other = portal.client.get(f"/api/submissions/{own}/file", headers=portal.auth("bats"))
    assert other.status_code == 404
    assert portal.client.get("/api/submissions", headers=portal.auth("bats")).json() == []
    assert portal.client.post(f"/api/submissions/{own}/select",
                              headers=portal.auth("bats")).status_code == 400
    assert portal.client.post(f"/api/submissions/{own}/select",
                              headers=portal.auth("owls")).json() == [own]


def test_private_board_and_organizer_tools(portal):
    portal.submit("owls", nuclei_valid(portal.root).encode())
    assert portal.client.get("/api/leaderboard/private",
                             headers=portal.auth("owls")).status_code == 403
    private = portal.client.get("/api/leaderboard/private", headers=portal.auth("organizer"))
    assert private.status_code == 200 and private.json()[0]["team"] == "owls"
    grades = portal.client.get("/api/organizer/grades.csv", headers=portal.auth("organizer"))
    assert grades.text.splitlines() == [
        "rank,team,private_score,submission_id,public_rank,name,student_id,email,grade",
        "1,owls,1.0,1,1,,,,"]  # a team with nobody in it: one row, no name
    assert portal.client.get("/api/organizer/grades.csv",
                             headers=portal.auth("owls")).status_code == 403
    issued = portal.client.post("/api/organizer/teams/moths/token",
                                headers=portal.auth("organizer")).json()
    assert portal.client.get("/api/submissions",
                             headers={"Authorization": f"Bearer {issued['token']}"}).json() == []
    assert portal.client.post("/api/organizer/rescore",
                              headers=portal.auth("organizer")).json() == []
    html = portal.client.get("/organizer", headers=portal.auth("organizer"))
    assert "moths" in html.text and "All submissions" in html.text


def form_token(html: str) -> str:
    """The CSRF token a page's forms carry."""
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_login_cookie_and_pages(portal):
    c = portal.client
    token = form_token(c.get("/login").text)
    assert c.post("/login", data={"token": "nope", "csrf_token": token}).status_code == 401
    r = c.post("/login", data={"token": portal.tokens["owls"], "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    home = c.get("/")
    assert home.status_code == 200 and "sample_submission.csv" in home.text
    token = form_token(home.text)  # the session's
    page = c.post("/submit", data={"csrf_token": token}, files={"file": ("bad.csv", b"x\n")})
    assert page.status_code == 422 and "header is" in page.text
    page = c.post("/submit", data={"csrf_token": token},
                  files={"file": ("good.csv", nuclei_valid(portal.root).encode())})
    assert page.status_code == 200 and 'id="public-score">1.000000' in page.text
    assert "private" not in page.text.lower().replace("private board", "")
    listing = c.get("/submissions")
    assert "invalid" in listing.text and "scored" in listing.text
    assert c.get("/files/sample_submission.csv").content == portal.sample


def test_no_url_leaks_private_data_the_store_or_other_teams(portal):
    owls_file = portal.variant(7)
    sid = portal.submit("owls", owls_file).json()["id"]
    solution = (portal.root / "private" / "solution.csv").read_bytes()
    secrets = [solution[:200], b"SQLite format 3", owls_file[-30:], b"task: nuclei"]
    # A symlink planted in public/ must not lead out of it.
    os.symlink(portal.root / "private" / "solution.csv", portal.root / "public" / "link.csv")
    targets = ["private/solution.csv", "store/submissions.sqlite", "competition.yaml",
               f"store/files/{sid}", "manifest.json"]
    urls = ["/files/link.csv", "/files//etc/passwd", "/files/%2fetc%2fpasswd",
            f"/api/submissions/{sid}/file", "/api/submissions/1/file"]
    for target in targets:
        for prefix in ("/files/", "/static/", "/"):
            for up in ("../", "%2e%2e/", "%2e%2e%2f", "..%2f", "....//", "%252e%252e/",
                       "..\\", ".%2e/"):
                urls.append(prefix + up + target)
                urls.append(prefix + up + up + target)
    for url in urls:
        for headers in ({}, portal.auth("bats")):
            r = portal.client.get(url, headers=headers)
            assert r.status_code in (303, 400, 401, 403, 404, 405, 422), (url, r.status_code)
            assert not any(s in r.content for s in secrets), url


def test_api_never_answers_with_a_server_error(demo_dirs, tmp_path):
    """schemathesis generates requests for every operation of the OpenAPI schema (as a team,
    as the organizer, and anonymously): none may get a 5xx. (Driven directly: schemathesis'
    pytest fixture loader does not work with pytest 9.)"""
    root = tmp_path / "schema"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    portal = Portal(root, daily_limit=1000)
    portal.submit("owls", portal.variant(0))
    schema = schemathesis.openapi.from_asgi("/openapi.json", portal.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            for who in ("owls", "organizer", None):
                response = case.call(headers=portal.auth(who) if who else {})
                assert response.status_code < 500, (case.method, case.path,
                                                     response.text[:300])

        check()


@pytest.fixture
def running_server(demo_dirs, tmp_path):
    """`competition serve` in its own process, on a free loopback port."""
    root = tmp_path / "served"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    # Five uploads of a team at once (the per-team cap on uploads in flight is
    # tests/test_upload_limits.py's matter; here the daily limit's transaction is).
    portal = Portal(root, portal={"uploads_in_flight_per_team": 5}, daily_limit=3)
    with served([root]) as url:
        portal.url = url
        yield portal


def test_twenty_concurrent_uploads_are_recorded_once_within_limits(running_server):
    portal = running_server
    board = Board(PreparedCompetition.open(portal.root))
    portal.tokens["wasps"] = board.teams.issue_token("wasps")
    teams = ["owls", "bats", "moths", "wasps"]
    results: list[tuple[str, int, dict]] = []
    barrier = threading.Barrier(20)

    def upload(k: int):
        team = teams[k % 4]
        barrier.wait()
        r = httpx.post(portal.url + "/api/submissions", params={"wait": 60},
                       headers=portal.auth(team),
                       files={"file": (f"v{k}.csv", portal.variant(k))}, timeout=120)
        results.append((team, r.status_code, r.json()))

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for _, code, _ in results) == [201] * 12 + [429] * 8
    for team in teams:
        assert sum(t == team and code == 201 for t, code, _ in results) == 3
    ids = [body["id"] for _, code, body in results if code == 201]
    assert len(set(ids)) == 12
    rows = board.submissions.all()
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["status"] == "scored" for r in rows), [(r["status"], r["error"]) for r in rows]


def test_cli_submits_to_a_server(running_server, tmp_path, capsys):
    from tests.test_bad_input import run_cli

    path = tmp_path / "v.csv"
    path.write_bytes(running_server.variant(0))
    code, out, err = run_cli(["submit", "--server", running_server.url, "--token",
                              running_server.tokens["owls"], path, "--json"], capsys)
    assert code == 0, err
    assert '"status": "scored"' in out and "private" not in out
    code, _, err = run_cli(["submit", "--server", running_server.url, "--token", "bad",
                            path], capsys)
    assert code == 2 and "401" in err


def test_public_files_come_as_one_streamed_zip_and_one_by_one(portal):
    import io
    import zipfile

    headers = portal.auth("owls")
    assert portal.client.get("/files.zip").status_code == 401
    response = portal.client.get("/files.zip", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    public = portal.root / "public"
    expected = sorted(p.relative_to(public).as_posix() for p in public.rglob("*") if p.is_file())
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == expected
        assert all(archive.read(name) == (public / name).read_bytes() for name in expected)
    # Folders are listed on a page of their own, each file served alone.
    folder = portal.client.get("/files/test/", headers=headers)
    assert folder.status_code == 200
    some = next(n for n in expected if n.startswith("test/"))
    assert f'href="/files/{some}"' in folder.text
    assert portal.client.get(f"/files/{some}", headers=headers).content == \
        (public / some).read_bytes()


def test_competition_page_renders_the_description_first_and_sanitised(portal):
    readme = portal.root / "public" / "README.md"
    readme.write_text(readme.read_text() + "\n<script>alert(1)</script>\n"
                      "[x](javascript:alert(2))\n")
    page = portal.client.get("/", headers=portal.auth("owls")).text
    title = readme.read_text().splitlines()[0].lstrip("# ")
    assert f"<h1>{title}</h1>" in page  # Markdown rendered, not shown raw
    assert page.index('class="description"') < page.index("Rules in force") < \
        page.index("Download all public files")
    assert "<script>alert(1)" not in page and 'href="javascript:' not in page
    # The folder with hundreds of images is one line with its count, not a line per file.
    n_test = len(list((portal.root / "public" / "test").iterdir()))
    assert f'href="/files/test/">test/</a> ({n_test} files)' in page
    assert page.count('href="/files/test/') == 1


def test_baselines_are_marked_and_left_out_of_the_grades(portal, tmp_path):
    board = Board(PreparedCompetition.open(portal.root))
    data = nuclei_valid(portal.root)
    for team, text, baseline in (("baseline-unet", data, True), ("owls", portal.sample.decode(),
                                                                  False)):
        path = tmp_path / f"{team}.csv"
        path.write_text(text)
        assert board.submissions.submit(path, team, baseline=baseline).status == "scored"
    headers = portal.auth("organizer")
    board_json = portal.client.get("/api/leaderboard").json()
    assert [(e["team"], e["baseline"]) for e in board_json] == [("baseline-unet", True),
                                                                 ("owls", False)]
    assert "baseline</span>" in portal.client.get("/leaderboard").text
    grades = portal.client.get("/api/organizer/grades.csv", headers=headers).text.splitlines()
    assert grades[0] == \
        "rank,team,private_score,submission_id,public_rank,name,student_id,email,grade"
    assert [row.split(",")[:2] for row in grades[1:]] == [["1", "owls"]]
    assert grades[1].split(",")[4] == "1"  # its public rank among participants


def test_my_submissions_shows_the_teams_message_and_the_error_both(portal):
    """A failed or invalid submission keeps the message its team wrote beside the error."""
    sent = portal.client.post("/api/submissions", params={"wait": 60},
                              headers=portal.auth("owls"), data={"message": "try two"},
                              files={"file": ("bad.csv", b"nonsense\n")})
    assert sent.status_code == 422
    page = portal.client.get("/submissions", headers=portal.auth("owls")).text
    assert "<th>your message</th><th>error</th>" in page
    assert '<td class="message">try two</td>' in page
    error = page.split('<td class="error-text">', 1)[1]
    assert error.startswith("bad.csv: line 1")


def test_api_competition_gives_rules_as_json_numbers(portal):
    body = portal.client.get("/api/competition", headers=portal.auth("owls")).json()
    rules = body["rules"]
    assert rules["daily_limit"] == 3 and isinstance(rules["daily_limit"], int)
    assert isinstance(rules["public_fraction"], float) and 0 < rules["public_fraction"] < 1
    assert isinstance(rules["max_submission_mb"], float)
    assert rules["deadline"] is None and isinstance(rules["ranking"], str)
    schema = portal.client.get("/openapi.json").json()["components"]["schemas"]
    kinds = {t.get("type") for t in
             schema["CompetitionOut"]["properties"]["rules"]["additionalProperties"]["anyOf"]}
    assert {"integer", "number", "string", "null"} <= kinds


def test_a_code_competition_tells_web_users_what_to_do_on_the_web(tmp_path):
    """The steps on the competition and submit pages need a browser only: the sample entry to
    download, a zip any file manager makes, the upload page; the CLI's `competition pack` is
    the aside for those who have it."""
    from tests.conftest import prepare_with_store

    portal = Portal(prepare_with_store("demo-nuclei", tmp_path / "code", submission="code"))
    home = portal.client.get("/", headers=portal.auth("owls")).text
    steps = home.split('<ol id="code-steps">', 1)[1].split("</ol>", 1)[0]
    assert 'href="/files/sample_entry/"' in steps and "Compress" in steps
    assert 'href="/submit"' in steps and "competition pack" not in steps
    description = home.split('aria-label="Description">', 1)[1].split("</section>", 1)[0]
    assert description.index("Submit page") < description.index("competition pack")
    assert "the portal's competition page shows the rules" in " ".join(description.split())
    submit = portal.client.get("/submit", headers=portal.auth("owls")).text
    hint = submit.split('<p class="hint">', 1)[1]
    assert hint.index("file manager") < hint.index("competition pack")
    listing = portal.client.get("/files/sample_entry/", headers=portal.auth("owls"))
    assert listing.status_code == 200 and "entry.py" in listing.text
