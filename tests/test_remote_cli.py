"""The remote CLI (Kaggle's): `login`, `competitions`, `download`, `leaderboard`,
`submissions`, `select` and `submit` with --server, against a running `competition serve`;
where the token comes from (flag, environment, a 0600 credentials file); refusals as one line
that never shows the token; a crafted download that would write outside its folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from competition.errors import CompetitionError
from competition.interfaces import credentials
from competition.interfaces.unzip import extract, member_path
from tests.test_bad_input import run_cli
from tests.test_web import Portal, _free_port, portal  # noqa: F401 (a fixture)

BAD_TOKEN = "not-the-token-Zq81x"


@pytest.fixture(scope="module")
def served(demo_dirs, tmp_path_factory):
    """`competition serve --threads` on a copy of the nuclei demo, for the whole module."""
    root = tmp_path_factory.mktemp("remote") / "nuclei-course"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    served = Portal(root, daily_limit=20)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "competition", "serve", str(root),
                             "--port", str(port), "--threads"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    served.url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(served.url + "/api/leaderboard", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(proc.stdout.read().decode())
    yield served
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No token or server from the caller's environment; a credentials folder of the test's."""
    for name in ("COMPETITION_TOKEN", "COMPETITION_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def cli(capsys, *args) -> tuple[int, str, str]:
    return run_cli(list(args), capsys)


def write_credentials(tokens: dict[str, str], mode: int = 0o600) -> Path:
    path = credentials.credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'["{k}"]\ntoken = "{v}"\n' for k, v in tokens.items()))
    path.chmod(mode)
    return path


# --- the API routes the remote commands use -------------------------------------------------


def test_catalog_and_public_files_api(portal):  # noqa: F811
    c = portal.client
    listed = c.get("/api/competitions")  # open, like the public board
    assert listed.status_code == 200
    [only] = listed.json()
    assert only["slug"] == portal.root.name and only["url"] == "/"
    assert only["status"] == "open" and only["kind"] == "nuclei"
    assert set(only) == {"id", "slug", "title", "kind", "status", "start", "deadline", "url"}
    for path in ("/api/files", "/api/files.zip"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"Authorization": f"Bearer {BAD_TOKEN}"}).status_code == 401
    files = c.get("/api/files", headers=portal.auth("owls")).json()
    public = portal.root / "public"
    assert {f["path"]: f["size"] for f in files} == {
        p.relative_to(public).as_posix(): p.stat().st_size
        for p in public.rglob("*") if p.is_file()}
    archive = c.get("/api/files.zip", headers=portal.auth("owls"))
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == sorted(f["path"] for f in files)
        assert all(not n.startswith("private") for n in z.namelist())


def test_catalog_says_upcoming_and_closed(demo_dirs, tmp_path):
    root = tmp_path / "later"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    later = Portal(root, start="2999-01-01T00:00:00", deadline="2999-02-01T00:00:00")
    [row] = later.client.get("/api/competitions").json()
    assert row["status"] == "upcoming" and row["start"] == "2999-01-01T00:00:00Z"
    root = tmp_path / "over"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    over = Portal(root, deadline="2000-01-01T00:00:00")
    assert over.client.get("/api/competitions").json()[0]["status"] == "closed"


# --- each command against a running portal --------------------------------------------------


def test_competitions_lists_the_portal(served, capsys):
    code, out, err = cli(capsys, "competitions", "--server", served.url, "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["slug"] == "nuclei-course" and row["status"] == "open"
    code, out, _ = cli(capsys, "competitions", "--server", served.url + "/")
    assert code == 0 and "nuclei-course" in out and "open" in out


def test_download_writes_the_public_files_and_never_replaces_without_force(served, capsys,
                                                                          tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("COMPETITION_TOKEN", served.tokens["owls"])
    dest = tmp_path / "data"
    code, out, err = cli(capsys, "download", "--server", served.url, "--out", dest)
    assert code == 0, err
    public = served.root / "public"
    expected = sorted(p.relative_to(public).as_posix() for p in public.rglob("*")
                      if p.is_file())
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")
                  if p.is_file()) == expected
    assert all((dest / n).read_bytes() == (public / n).read_bytes() for n in expected)
    (dest / "README.md").write_text("my notes")
    code, _, err = cli(capsys, "download", "--server", served.url, "--out", dest)
    assert code == 2 and "already has" in err and "--force" in err
    assert (dest / "README.md").read_text() == "my notes"
    code, _, err = cli(capsys, "download", "--server", served.url, "--out", dest, "--force")
    assert code == 0, err
    assert (dest / "README.md").read_bytes() == (public / "README.md").read_bytes()
    monkeypatch.chdir(tmp_path)  # without --out: a folder named after the competition
    assert cli(capsys, "download", "--server", served.url)[0] == 0
    assert (tmp_path / "demo-nuclei" / "sample_submission.csv").is_file()


def test_submit_submissions_select_and_boards_remote_match_local(served, capsys, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("COMPETITION_SERVER", served.url)
    monkeypatch.setenv("COMPETITION_TOKEN", served.tokens["bats"])
    path = tmp_path / "v.csv"
    path.write_bytes(served.variant(7))
    code, out, err = cli(capsys, "submit", path, "--message", "first", "--json")
    assert code == 0, err
    sub = json.loads(out)
    assert sub["status"] == "scored" and "private_score" not in sub
    # The same rows as the local commands, in the same shape.
    code, out, err = cli(capsys, "submissions", "--json")
    assert code == 0, err
    remote_rows = json.loads(out)
    _, local_out, _ = cli(capsys, "submissions", served.root, "--team", "bats", "--json")
    assert remote_rows == json.loads(local_out)
    assert [r["id"] for r in remote_rows] == [sub["id"]]
    code, out, _ = cli(capsys, "submissions")
    assert code == 0 and "Submissions of bats" in out and "first" in out
    code, out, err = cli(capsys, "select", str(sub["id"]))
    assert code == 0 and f"final selections of your team: {sub['id']}" in out, err
    assert json.loads(cli(capsys, "submissions", "--json")[1])[0]["selected"] is True
    code, out, _ = cli(capsys, "select", str(sub["id"]), "--unselect")
    assert code == 0 and "final selections of your team: none" in out
    code, _, err = cli(capsys, "select", "999999")
    assert code == 2 and "no submission 999999 of team 'bats'" in err
    code, out, _ = cli(capsys, "leaderboard", "--json")
    assert code == 0
    _, local_out, _ = cli(capsys, "leaderboard", served.root, "--json")
    assert json.loads(out) == json.loads(local_out)
    assert "bats" in [e["team"] for e in json.loads(out)]
    code, out, _ = cli(capsys, "leaderboard")
    assert code == 0 and "Public leaderboard" in out and "bats" in out
    # The private board before the deadline: the organizer's, refused to a team.
    code, _, err = cli(capsys, "leaderboard", "--private")
    assert code == 2 and "403" in err and "deadline" in err
    code, out, err = cli(capsys, "leaderboard", "--private", "--json", "--token",
                         served.tokens["organizer"])
    assert code == 0 and "public_rank" in out, err
    code, out, _ = cli(capsys, "leaderboard", "--late", "--json")
    assert code == 0 and json.loads(out) == []


def test_local_select_takes_several_ids_and_drops_them(demo_dirs, tmp_path, capsys):
    root = tmp_path / "2026"  # a folder named with digits is still a folder
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    local = Portal(root)
    ids = []
    for k in range(2):
        path = tmp_path / f"v{k}.csv"
        path.write_bytes(local.variant(k))
        code, out, err = cli(capsys, "submit", root, path, "--team", "owls", "--json")
        assert code == 0, err
        ids.append(json.loads(out)["id"])
    code, out, err = cli(capsys, "select", root, *map(str, ids), "--team", "owls")
    assert code == 0 and f"final selections of owls: {ids[0]}, {ids[1]} (of 2)" in out, err
    code, out, _ = cli(capsys, "select", root, str(ids[0]), "--team", "owls", "--unselect")
    assert code == 0 and f"final selections of owls: {ids[1]} (of 2)" in out
    code, _, err = cli(capsys, "select", root, "x1", "--team", "owls")
    assert code == 2 and "not a submission id" in err


def test_a_folder_and_a_server_together_are_refused(served, capsys):
    for args in (["leaderboard", served.root], ["submissions", served.root, "--team", "owls"],
                 ["select", served.root, "1", "--team", "owls"]):
        code, _, err = cli(capsys, *args, "--server", served.url)
        assert code == 2 and "not both" in err, args
    code, _, err = cli(capsys, "leaderboard")
    assert code == 2 and "--server URL" in err and "DIR" in err


# --- credentials ------------------------------------------------------------------------------


def test_token_from_flag_then_environment_then_file(served, capsys, monkeypatch):
    path = write_credentials({served.url: served.tokens["owls"]})
    code, out, err = cli(capsys, "submissions", "--server", served.url, "--json")
    assert code == 0, err  # the file's token
    monkeypatch.setenv("COMPETITION_TOKEN", BAD_TOKEN)  # the environment wins over the file
    code, _, err = cli(capsys, "submissions", "--server", served.url)
    assert code == 2 and "$COMPETITION_TOKEN" in err and "401" in err
    assert BAD_TOKEN not in err
    code, _, err = cli(capsys, "submissions", "--server", served.url, "--token",
                       served.tokens["owls"])
    assert code == 0, err  # the flag wins over the environment
    assert "visible to other users" in err and served.tokens["owls"] not in err
    code, _, err = cli(capsys, "submissions", "--server", served.url, "--token", BAD_TOKEN)
    assert code == 2 and "refused the token from --token" in err and BAD_TOKEN not in err
    monkeypatch.delenv("COMPETITION_TOKEN")
    write_credentials({served.url: BAD_TOKEN})
    code, out, err = cli(capsys, "submissions", "--server", served.url)
    assert code == 2 and str(path) in err and BAD_TOKEN not in err + out
    path.unlink()
    code, _, err = cli(capsys, "submissions", "--server", served.url)
    assert code == 2 and "needs a token" in err and "competition login" in err


def test_a_credentials_file_others_may_read_is_refused(served, capsys):
    path = write_credentials({served.url: served.tokens["owls"]}, mode=0o644)
    code, out, err = cli(capsys, "submissions", "--server", served.url)
    assert code == 2 and f"chmod 600 {path}" in err.replace("\n", "")
    assert served.tokens["owls"] not in err + out


def test_login_keeps_the_token_readable_by_its_owner_only(served, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(BAD_TOKEN + "\n"))
    code, out, err = cli(capsys, "login", "--server", served.url)
    assert code == 2 and "401" in err and BAD_TOKEN not in err + out
    assert not credentials.credentials_path().exists()  # a refused token is not kept
    monkeypatch.setattr(sys, "stdin", io.StringIO(served.tokens["moths"] + "\n"))
    code, out, err = cli(capsys, "login", "--server", served.url + "/")
    assert code == 0, err
    assert served.tokens["moths"] not in out + err
    path = credentials.credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.read_credentials(path) == {served.url: served.tokens["moths"]}
    code, out, err = cli(capsys, "submissions", "--server", served.url)
    assert code == 0 and "Submissions of" in out, err


def test_a_course_token_serves_its_competitions_and_the_longest_entry_wins(monkeypatch):
    write_credentials({"http://h:8000": "course", "http://h:8000/c/b": "bee"})
    assert credentials.token_for("http://h:8000/c/a", None).value == "course"
    assert credentials.token_for("http://h:8000/c/b", None).value == "bee"
    assert credentials.token_for("http://h:8000/c/bb", None).value == "course"
    assert credentials.token_for("http://h:80001", None) is None
    token = credentials.token_for("http://h:8000", "flagged")
    assert token.source == "--token" and "flagged" not in repr(token)
    for bad in ("ftp://h", "h:8000", "http://user:pw@h:8000", "http://h:8000/?x=1"):
        with pytest.raises(CompetitionError, match="portal's address"):
            credentials.normal_server(bad)


# --- refusals, from a portal that misbehaves --------------------------------------------------


def crafted_zip(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name in names:
            z.writestr(zipfile.ZipInfo(name), b"x")
    return buffer.getvalue()


class Stub(BaseHTTPRequestHandler):
    """Answers by path: (status, headers, body)."""

    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, headers, body = self.answers.get(self.path, (404, {}, b"no"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    JSON = {"Content-Type": "application/json"}
    Stub.answers = {
        "/api/competitions": (200, {"Content-Type": "text/html"}, b"<html>hi</html>"),
        "/api/leaderboard": (429, {**JSON, "Retry-After": "7"},
                             b'{"detail": "too many sign-in failures"}'),
        "/api/submissions": (302, {"Location": "http://elsewhere.example/api/submissions"},
                             b""),
        "/api/competition": (200, JSON, b'{"name": "evil"}'),
        # a course portal's root, asked for a competition's API: FastAPI's own 404
        "/api/leaderboard/private": (404, JSON, b'{"detail": "Not Found"}'),
        "/c/two/api/competitions": (200, JSON, json.dumps([
            {"id": i, "slug": i, "title": i.title(), "kind": "nuclei", "status": "open",
             "start": None, "deadline": None, "url": f"/c/{i}"} for i in ("one", "two")
        ]).encode()),
        "/api/files": (200, JSON, b'[{"path": "a.txt", "size": 1}]'),
        "/api/files.zip": (200, {"Content-Type": "application/zip"},
                           crafted_zip(["a.txt", "../escaped.txt"])),
    }
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_refusals_are_one_line_each(stub, capsys, tmp_path):
    code, _, err = cli(capsys, "competitions", "--server", stub)
    assert code == 2 and "without JSON" in err
    code, _, err = cli(capsys, "leaderboard", "--server", stub)
    assert code == 2 and "429" in err and "try again in 7 s" in err
    code, _, err = cli(capsys, "submissions", "--server", stub, "--token", BAD_TOKEN)
    assert code == 2 and "redirected" in err and BAD_TOKEN not in err
    code, _, err = cli(capsys, "leaderboard", "--server", stub + "/c/none", "--late")
    assert code == 2 and "has no /c/none/api/leaderboard/late (404)" in err
    code, _, err = cli(capsys, "leaderboard", "--server", stub, "--private")
    assert code == 2 and "has no /api/leaderboard/private (404): is it a competition" in err
    code, _, err = cli(capsys, "submit", "--server", stub, __file__)
    assert code == 2 and "needs a token to submit" in err  # before any upload
    code, out, err = cli(capsys, "competitions", "--server", stub + "/c/two/", "--json")
    assert code == 0 and json.loads(out)[1]["slug"] == "two", err  # the course's list
    code, _, err = cli(capsys, "leaderboard", "--server", f"http://127.0.0.1:{_free_port()}")
    assert code == 2 and "could not reach" in err
    assert all("Traceback" not in e for e in (err,))


def test_a_download_naming_a_path_outside_its_folder_writes_nothing(stub, capsys, tmp_path):
    dest = tmp_path / "in" / "dl"
    code, _, err = cli(capsys, "download", "--server", stub, "--token", "t", "--out", dest)
    assert code == 2 and "outside the folder" in err
    assert not (tmp_path / "in" / "escaped.txt").exists()
    assert not (dest / "a.txt").exists()
    assert [p.name for p in dest.iterdir()] == []  # the partial download is removed


def test_a_download_larger_than_announced_is_refused(stub, capsys, tmp_path):
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as z:
        z.writestr("a.txt", os.urandom(3 << 20))
    Stub.answers["/api/files.zip"] = (200, {}, big.getvalue())
    dest = tmp_path / "dl"
    code, _, err = cli(capsys, "download", "--server", stub, "--token", "t", "--out", dest)
    assert code == 2 and "more than the 1 bytes of files it announced" in err
    assert list(dest.iterdir()) == []
    archive = tmp_path / "a.zip"
    archive.write_bytes(big.getvalue())
    with pytest.raises(CompetitionError, match="add up to more than the 10 bytes"):
        extract(archive, tmp_path / "out", most_bytes=10)
    assert not (tmp_path / "out" / "a.txt").exists()


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../x", "C:x", "a\\..\\x", "a//x",
                                  "./x", "x\x00y", ""])
def test_member_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(CompetitionError, match="outside the folder"):
        member_path(name)


def test_links_are_refused_and_never_followed(tmp_path):
    archive = tmp_path / "a.zip"
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(CompetitionError, match="a link"):
        extract(archive, tmp_path / "out")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(outside, tmp_path / "out" / "sub")  # a folder already there leads out
    archive.write_bytes(crafted_zip(["sub/x.txt"]))
    with pytest.raises(CompetitionError, match="leads outside"):
        extract(archive, tmp_path / "out")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["..", ".", "...", ".ssh", "", "/"])
def test_the_default_download_folder_is_never_the_working_folder_or_above(
        name, stub, capsys, tmp_path, monkeypatch):
    """A portal naming its competition `..` or `.` does not choose where its files go."""
    Stub.answers["/api/competition"] = (200, {"Content-Type": "application/json"},
                                        json.dumps({"name": name}).encode())
    Stub.answers["/api/files"] = (200, {"Content-Type": "application/json"},
                                  b'[{"path": ".ssh/authorized_keys", "size": 1}]')
    Stub.answers["/api/files.zip"] = (200, {}, crafted_zip([".ssh/authorized_keys"]))
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, _, err = cli(capsys, "download", "--server", stub, "--token", "t")
    assert code == 0, err
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("authorized_keys"))
    expected = "ssh" if name == ".ssh" else "competition"
    assert written == [f"home/work/{expected}/.ssh/authorized_keys"]


def test_a_portals_text_cannot_send_control_sequences_to_the_terminal(stub, capsys,
                                                                      monkeypatch):
    """Team names, titles and messages from a portal are printed with their control
    characters shown as escapes: an ESC sequence could retitle the terminal, move the cursor
    or write the clipboard (OSC 52)."""
    evil = "owls\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x9b31m[bold]x[/bold]"
    Stub.answers["/api/leaderboard/late"] = (
        200, {"Content-Type": "application/json"},
        json.dumps([{"team": evil, "baseline": False, "submission_id": 1,
                     "submitted_at": "2026-12-01T00:00:00Z", "public_score": 0.5}]).encode())
    monkeypatch.setenv("COLUMNS", "300")  # one line per row
    code, out, err = cli(capsys, "leaderboard", "--server", stub, "--late")
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "owls\\x1b]52;c;" in out  # shown, not sent
    assert "[bold]x[/bold]" in out  # no markup either


def test_an_answer_is_read_only_up_to_its_bound(stub, capsys, monkeypatch):
    """Whatever answers at --server, no more of its reply is read than a board or a refusal
    could need: a longer one is refused in one line, unparsed."""
    from competition.interfaces.web import client

    monkeypatch.setattr(client, "MAX_REPLY_BYTES", 1000)
    monkeypatch.setattr(client, "MAX_REFUSAL_BYTES", 100)
    huge = json.dumps([{"team": "x" * 50}] * 50).encode()
    Stub.answers["/api/leaderboard"] = (200, {"Content-Type": "application/json"}, huge)
    Stub.answers["/api/leaderboard/late"] = (
        400, {"Content-Type": "application/json"}, b'{"detail": "' + b"y" * 500 + b'"}')
    code, _, err = cli(capsys, "leaderboard", "--server", stub)
    assert code == 2 and "with more than 1,000 bytes" in err
    code, _, err = cli(capsys, "leaderboard", "--server", stub, "--late")
    assert code == 2 and "with more than 100 bytes" in err
