"""The portal against a hostile participant (issue 16, web layer): uploads refused from their
headers before the body is read and streamed within a hard cap; server-side sessions that
logout revokes; CSRF tokens and the Origin check; odd paths and file names; the message cap;
competition.yaml changes picked up without a restart; spreadsheet-safe CSV exports."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.board.rules import utcnow
from competition.board.store.schema import sessions as sessions_table
from competition.formats.csv_safe import csv_text, safe_cell
from competition.interfaces.web.app import create_app
from tests.test_bad_input import nuclei_valid
from tests.test_web import Portal, _free_port, form_token

MB = 1 << 20


@pytest.fixture
def portal(demo_dirs, tmp_path) -> Portal:
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    return Portal(root, daily_limit=3)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the login form as a browser would; the session's CSRF token."""
    login = client.get("/login")
    response = client.post("/login", data={"token": token,
                                           "csrf_token": form_token(login.text)},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return form_token(client.get("/").text)


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body written byte by byte (httpx would escape the odd file names)."""
    boundary = "hostile-boundary"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n"
                 .encode("utf-8", "surrogateescape") + data + b"\r\n")
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --- a real server on loopback ------------------------------------------------------------

@contextlib.contextmanager
def served(root: Path, tmp: Path, *args: str):
    """`competition serve` in its own process with its own temporary folder."""
    port = _free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp)}
    # Scoring jobs in threads (no Dask scratch space in the TMPDIR this test watches).
    proc = subprocess.Popen([sys.executable, "-m", "competition", "serve", str(root),
                             "--port", str(port), "--threads", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/api/leaderboard", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stdout.read().decode())
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def open_file_bytes(pid: int, root: Path, tmp: Path) -> int:
    """Bytes in the files the server holds open in its temporary folder, in the competition
    or already deleted (an unlinked spool file counts on the disk until it is closed)."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            info = fd.stat()
        except OSError:
            continue
        ours = target.startswith((str(tmp), str(root))) or target.endswith("(deleted)")
        if ours and not target.endswith((".sqlite", "-wal", "-shm")):
            total += info.st_size
    return total


def send_raw(port: int, head: bytes, body_chunks, deadline_s: float = 10.0):
    """Send a request's head, then its body from a thread while the answer is awaited; the
    status line, how long it took, and how many body bytes had gone out by then."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(deadline_s)
    sent = [0]

    def pump():
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass  # the server answered and closed: the rest is never read

    start = time.monotonic()
    sock.sendall(head)
    threading.Thread(target=pump, daemon=True).start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        elapsed = time.monotonic() - start
        at_answer = sent[0]
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), elapsed, at_answer, answer


FILE_PART = (b'--hostile-boundary\r\nContent-Disposition: form-data; name="file"; '
             b'filename="big.csv"\r\n\r\n')


def zeros(total: int, chunk: int = 64 * 1024):
    """A well-formed start of a file part, then its data: what a parser would spool."""
    yield FILE_PART
    for _ in range(total // chunk):
        yield b"0" * chunk


@pytest.fixture(scope="module")
def small_server(demo_dirs, tmp_path_factory):
    """A served competition whose uploads are limited to 1 MiB, with a team token."""
    base = tmp_path_factory.mktemp("served")
    root = base / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    config = yaml.safe_load((root / "competition.yaml").read_text())
    config["rules"]["max_submission_mb"] = 1
    (root / "competition.yaml").write_text(yaml.safe_dump(config))
    token = Board(PreparedCompetition.open(root)).teams.issue_token("owls")
    with served(root, base / "tmp") as (port, proc):
        yield {"port": port, "pid": proc.pid, "root": root, "tmp": base / "tmp",
               "token": token}


def upload_head(port: int, path: str, length: int | None, token: str | None = None,
                accept: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: multipart/form-data; boundary=hostile-boundary",
             f"Accept: {accept}"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_3_gb_upload_without_a_token_is_refused_before_its_body_is_read(small_server):
    s = small_server
    before = open_file_bytes(s["pid"], s["root"], s["tmp"])
    for path, accept, expected in (("/api/submissions", "application/json", "401"),
                                   ("/submit", "text/html", "303")):
        status, elapsed, sent, answer = send_raw(
            s["port"], upload_head(s["port"], path, 3 * 10**9, accept=accept),
            zeros(16 * MB))
        assert expected in status, (path, status)
        if expected == "303":
            assert b"location: /login" in answer.lower()
        # Answered at once, while most of the 16 MB (let alone 3 GB) was still to come.
        assert elapsed < 5 and sent < 16 * MB, (path, elapsed, sent)
        # Nothing of the body was spooled: no temporary file, open or left behind.
        assert open_file_bytes(s["pid"], s["root"], s["tmp"]) - before < MB
        assert tree_bytes(s["tmp"]) < MB
    stored = s["root"] / "store" / "files"
    assert not stored.exists() or tree_bytes(stored) == 0


def test_an_upload_over_the_limit_is_refused_from_its_content_length(small_server):
    s = small_server
    status, elapsed, sent, _ = send_raw(
        s["port"], upload_head(s["port"], "/api/submissions", 3 * 10**9, s["token"]),
        zeros(16 * MB))
    assert "413" in status and elapsed < 5 and sent < 16 * MB, (status, elapsed, sent)
    assert tree_bytes(s["tmp"]) < MB


def test_a_chunked_upload_is_cut_off_at_the_cap(small_server):
    """No Content-Length: the bytes are counted as they come, and the 413 comes after about
    1 MiB (the cap), long before the 24 MB sent; the partial file is deleted."""
    s = small_server
    def chunked():
        for chunk in zeros(24 * MB):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)

    status, elapsed, sent, answer = send_raw(
        s["port"], upload_head(s["port"], "/api/submissions", None, s["token"]), chunked())
    assert "413" in status, answer
    assert b"size limit" in answer or b"413" in answer
    assert sent < 24 * MB and elapsed < 10
    time.sleep(0.2)
    assert tree_bytes(s["tmp"]) == 0 and list(s["tmp"].iterdir()) == []


def test_odd_paths_get_a_clear_4xx_from_the_real_server(small_server):
    s = small_server
    url = f"http://127.0.0.1:{s['port']}"
    headers = {"Authorization": f"Bearer {s['token']}"}
    nul = httpx.get(url + "/files/README.md%00.png", headers=headers)
    assert nul.status_code == 400 and "control character" in nul.json()["detail"]
    long = httpx.get(url + "/files/" + "a" * 6000, headers=headers)
    assert long.status_code == 414 and "longer than" in long.json()["detail"]
    component = httpx.get(url + "/files/" + "b" * 300, headers=headers)
    assert component.status_code == 404
    body, content_type = multipart([("file", "..", b"x\n")])
    named = httpx.post(url + "/api/submissions", params={"wait": 60}, content=body,
                       headers={**headers, "Content-Type": content_type})
    assert named.status_code == 400 and "not a file name" in named.json()["detail"]


# --- in-process: names, messages ------------------------------------------------------------

@pytest.mark.parametrize("name, says", [
    ("..", "not a file name"), (".", "not a file name"), ("/", "without / or \\"),
    ("../../etc/passwd", "without / or \\"), ("a\\b.csv", "without / or \\"),
    ("a\x00b.csv", "U+0000"), ("a\x01b.csv", "U+0001"), ("a\u202eb.csv", "U+202E"),
    ("x" * 300 + ".csv", "at most 255"), ("é" * 200, "at most 255"), (" ", "no name"),
])
def test_odd_file_names_are_refused_with_a_clear_400(portal, name, says):
    body, content_type = multipart([("file", name, portal.sample)])
    r = portal.client.post("/api/submissions", params={"wait": 60}, content=body,
                           headers={**portal.auth("owls"), "Content-Type": content_type})
    assert r.status_code == 400 and says in r.json()["detail"], (name, r.text)
    page = portal.client.post("/submit", content=body,
                              headers={**portal.auth("owls"), "Content-Type": content_type})
    assert page.status_code == 400 and says[:5] in page.text
    assert portal.client.get("/api/submissions", headers=portal.auth("owls")).json() == []


def test_malformed_uploads_get_a_4xx(portal):
    auth = portal.auth("owls")
    cases = [
        ({"Content-Type": "application/json"}, b"{}", 415),
        ({"Content-Type": "multipart/form-data"}, b"--x\r\n", 415),  # no boundary
        ({"Content-Type": "multipart/form-data; boundary=b"}, b"garbage", 400),
        ({"Content-Type": "multipart/form-data; boundary=b"},
         b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n", 400),
    ]
    two, content_type = multipart([("file", "a.csv", b"1"), ("file", "b.csv", b"2")])
    cases.append(({"Content-Type": content_type}, two, 400))
    other, content_type = multipart([("upload", "a.csv", b"1")])
    cases.append(({"Content-Type": content_type}, other, 400))
    none, content_type = multipart([("message", None, b"hello")])
    cases.append(({"Content-Type": content_type}, none, 422))
    for headers, body, status in cases:
        r = portal.client.post("/api/submissions", params={"wait": 60},
                               content=body, headers={**auth, **headers})
        assert r.status_code == status, (headers, body[:40], r.text)


def test_messages_are_capped_at_1000_characters(portal):
    data = portal.variant(0)
    ok = portal.client.post("/api/submissions", params={"wait": 60}, headers=portal.auth("owls"),
                            files={"file": ("a.csv", data)}, data={"message": "é" * 1000})
    assert ok.status_code == 201 and ok.json()["message"] == "é" * 1000
    for text in ("x" * 1001, "é" * 1001, "x" * 900_000):
        api = portal.client.post("/api/submissions", params={"wait": 60},
                                 headers=portal.auth("owls"),
                                 files={"file": ("b.csv", portal.variant(1))},
                                 data={"message": text})
        assert api.status_code == 422 and "1000" in api.json()["detail"], api.text[:200]
        page = portal.client.post("/submit", headers=portal.auth("owls"),
                                  files={"file": ("b.csv", portal.variant(1))},
                                  data={"message": text})
        assert page.status_code == 422
        assert "at most 1000" in page.text or "longer than 1000" in page.text
    assert len(portal.client.get("/api/submissions", headers=portal.auth("owls")).json()) == 1


# --- sessions -----------------------------------------------------------------------------

def session_cookie(response) -> str:
    return next(h for h in response.headers.get_list("set-cookie")
                if h.lower().startswith(("competition_session=", "__host-competition_session=")))


def test_login_opens_a_server_side_session_and_the_cookie_never_holds_the_token(portal):
    c = portal.client
    login = c.get("/login")
    r = c.post("/login", data={"token": portal.tokens["owls"],
                               "csrf_token": form_token(login.text)}, follow_redirects=False)
    cookie = session_cookie(r)
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert "max-age=43200" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain http on loopback
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert portal.tokens["owls"] not in str(r.headers)
    assert len(session_id) >= 40 and session_id != portal.tokens["owls"]
    board = Board(PreparedCompetition.open(portal.root))
    with board.engine.connect() as conn:
        rows = conn.execute(select(sessions_table)).mappings().all()
    assert len(rows) == 1 and rows[0]["role"] == "team"
    assert session_id not in str(dict(rows[0]))  # only its hash is stored
    assert c.get("/api/submissions").status_code == 200  # the cookie works for reading


@pytest.mark.parametrize("base, trust, forwarded, secure", [
    ("https://testserver", False, None, True),
    ("http://testserver", True, "https", True),
    ("http://testserver", False, "https", False),  # an untrusted header is ignored
])
def test_the_cookie_is_secure_over_https_or_behind_a_trusted_proxy(
        portal, base, trust, forwarded, secure):
    app = create_app(portal.root, trust_proxy=trust)
    c = TestClient(app, base_url=base)
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    login = c.get("/login", headers=headers)
    # The browser (talking HTTPS to the proxy) sends the pre-session cookie back; httpx would
    # not send a Secure cookie over the test's plain http, so it goes as a header.
    pre = login.headers["set-cookie"].split(";")[0]
    assert pre.lower().startswith("__host-") == secure
    r = c.post("/login", headers={**headers, "Cookie": pre}, follow_redirects=False,
               data={"token": portal.tokens["owls"], "csrf_token": form_token(login.text)})
    assert r.status_code == 303
    cookie = session_cookie(r).lower()
    assert ("; secure" in cookie) == secure
    assert cookie.startswith("__host-") == secure  # not settable by another port or host


def test_logout_revokes_the_session_server_side(portal):
    c = portal.client
    csrf = sign_in(c, portal.tokens["owls"])
    stolen = c.cookies.get("competition_session")
    thief = TestClient(portal.app, cookies={"competition_session": stolen})
    assert thief.get("/api/submissions").status_code == 200
    assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False
                  ).status_code == 303
    assert thief.get("/api/submissions").status_code == 401
    assert thief.get("/submit", headers={"Accept": "text/html"}, follow_redirects=False
                     ).headers["location"] == "/login"


def test_sessions_end_when_they_expire_or_the_token_is_replaced(portal):
    c = portal.client
    sign_in(c, portal.tokens["owls"])
    assert c.get("/api/submissions").status_code == 200
    ctx = portal.app.state.portal.board.ctx
    ctx.now = lambda: utcnow() + timedelta(hours=12, minutes=1)
    assert c.get("/api/submissions").status_code == 401  # expired
    ctx.now = utcnow
    assert c.get("/api/submissions").status_code == 200
    Board(PreparedCompetition.open(portal.root)).teams.issue_token("owls")
    assert c.get("/api/submissions").status_code == 401  # the token it came from is gone


def test_sessions_in_the_store(store_url, demo_dirs, tmp_path):
    """The board's sessions on SQLite and PostgreSQL: only hashes kept, expiry, revocation,
    replaced tokens, and a bounded number of live sessions per token."""
    from competition.board.sessions import MAX_LIVE_PER_TOKEN, Sessions

    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    board = Board(PreparedCompetition.open(root), url=store_url)
    sessions = Sessions(board.ctx, board.teams)
    team, organizer = board.teams.issue_token("owls"), board.teams.issue_organizer_token()
    assert sessions.open("not a token") is None
    sid, session = sessions.open(team)
    assert (session.role, session.team) == ("team", "owls")
    assert sessions.get(sid) == session and sessions.get(sid + "x") is None
    org_id, _ = sessions.open(organizer, timedelta(minutes=5))
    assert sessions.get(org_id).role == "organizer"
    with board.engine.connect() as conn:
        stored = [dict(r) for r in conn.execute(select(sessions_table)).mappings()]
    assert not any(sid in str(r) or team in str(r) for r in stored)
    board.ctx.now = lambda: utcnow() + timedelta(minutes=6)
    assert sessions.get(org_id) is None and sessions.get(sid) is not None  # expired
    board.ctx.now = utcnow
    assert sessions.revoke(sid) and sessions.get(sid) is None and not sessions.revoke(sid)
    board.teams.issue_organizer_token()
    org_id, _ = sessions.open(organizer) or (None, None)
    assert org_id is None  # the replaced token opens nothing
    ids = [sessions.open(team)[0] for _ in range(MAX_LIVE_PER_TOKEN + 3)]
    live = [i for i in ids if sessions.get(i) is not None]
    assert live == ids[3:]  # the oldest were revoked


def test_login_needs_the_forms_csrf_token(portal):
    c = portal.client
    token = portal.tokens["owls"]
    assert c.post("/login", data={"token": token}).status_code == 403
    # A page elsewhere can post the field but not read the cookie it must match.
    fresh = TestClient(portal.app)
    assert fresh.post("/login", data={"token": token, "csrf_token": "guess"}
                      ).status_code == 403
    login = c.get("/login")
    wrong = c.post("/login", data={"token": token, "csrf_token": "x" + form_token(login.text)})
    assert wrong.status_code == 403 and "reload the page" in wrong.text
    # Even with a valid pair, a post from another origin is refused.
    cross = c.post("/login", data={"token": token, "csrf_token": form_token(login.text)},
                   headers={"Origin": "http://testserver:8081"}, follow_redirects=False)
    assert cross.status_code == 403
    assert "competition_session" not in c.cookies
    assert c.post("/login", data={"token": token, "csrf_token": form_token(login.text)},
                  follow_redirects=False).status_code == 303


# --- CSRF and Origin on state changes -----------------------------------------------------

def test_a_page_on_another_port_cannot_remove_a_teams_selections(portal):
    sid = portal.submit("owls", portal.variant(0)).json()["id"]
    c = portal.client
    csrf = sign_in(c, portal.tokens["owls"])
    assert c.post(f"/submissions/{sid}/select", data={"csrf_token": csrf},
                  follow_redirects=False).status_code == 303

    def selected() -> bool:
        rows = portal.client.get("/api/submissions", headers=portal.auth("owls")).json()
        return rows[0]["selected"]

    assert selected()
    attempts = [
        ({"Origin": "http://testserver:8081"}, {"csrf_token": csrf}),  # same host, other port
        ({"Origin": "null"}, {"csrf_token": csrf}),
        ({"Referer": "http://testserver:8081/attack.html"}, {"csrf_token": csrf}),
        ({"Origin": "http://testserver"}, {}),  # same origin, no token
        ({}, {"csrf_token": "not-the-token"}),
    ]
    for headers, data in attempts:
        r = c.post(f"/submissions/{sid}/select", data={"unselect": "true", **data},
                   headers=headers, follow_redirects=False)
        assert r.status_code == 403, (headers, data, r.status_code)
        assert selected()
    api = c.delete(f"/api/submissions/{sid}/select")  # cookie, no X-CSRF-Token
    assert api.status_code == 403 and selected()
    # The team's own page, from its own origin, still can.
    r = c.post(f"/submissions/{sid}/select", data={"unselect": "true", "csrf_token": csrf},
               headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303 and not selected()
    assert c.post(f"/api/submissions/{sid}/select", headers={"X-CSRF-Token": csrf}
                  ).status_code == 200 and selected()


def test_rescoring_and_token_issue_from_another_origin_are_refused(portal):
    c = portal.client
    csrf = sign_in(c, portal.tokens["organizer"])
    foreign = {"Origin": "http://127.0.0.1:9999"}
    for path, data in (("/organizer/rescore", {"csrf_token": csrf}),
                       ("/organizer/token", {"csrf_token": csrf, "team": "intruders"})):
        r = c.post(path, data=data, headers=foreign)
        assert r.status_code == 403 and "another site" in r.text, path
    for headers in (foreign, {**foreign, **portal.auth("organizer")}):
        assert c.post("/api/organizer/rescore", headers=headers).status_code == 403
        assert c.post("/api/organizer/teams/intruders/token", headers=headers
                      ).status_code == 403
    # Without the session's CSRF token the cookie alone does nothing either.
    assert c.post("/organizer/token", data={"team": "intruders"}).status_code == 403
    assert c.post("/api/organizer/teams/intruders/token").status_code == 403
    assert "intruders" not in [t["team"] for t in Board(PreparedCompetition.open(
        portal.root)).teams.overview()]
    # The organizer's own page can.
    r = c.post("/organizer/token", data={"csrf_token": csrf, "team": "newcomers"},
               headers={"Origin": "http://testserver"})
    assert r.status_code == 200 and 'id="new-token"' in r.text


def test_bearer_calls_need_no_csrf_token_and_every_form_carries_one(portal):
    sid = portal.submit("owls", portal.variant(0)).json()["id"]
    assert portal.client.post(f"/api/submissions/{sid}/select",
                              headers=portal.auth("owls")).status_code == 200
    c = portal.client
    csrf = sign_in(c, portal.tokens["owls"])
    for path in ("/", "/submit", "/submissions", "/leaderboard"):
        html = c.get(path).text
        forms = re.findall(r"<form .*?</form>", html, re.S)
        assert forms and all(f'name="csrf_token" value="{csrf}"' in f for f in forms), path
    # On the upload form the token comes before the file (checked before reading it).
    html = c.get("/submit").text
    assert html.index('name="csrf_token"') < html.index('name="file"')
    refused = c.post("/submit", files={"file": ("a.csv", portal.variant(1))})
    assert refused.status_code == 403
    accepted = c.post("/submit", data={"csrf_token": csrf},
                      files={"file": ("a.csv", portal.variant(1))})
    assert accepted.status_code == 200 and 'id="public-score"' in accepted.text


# --- competition.yaml picked up without a restart -----------------------------------------

def edit_rules(root: Path, **rules) -> None:
    time.sleep(0.01)  # a new modification time, as an organizer's edit would have
    path = root / "competition.yaml"
    config = yaml.safe_load(path.read_text())
    config["rules"].update(rules)
    path.write_text(yaml.safe_dump(config))


def test_rule_changes_in_competition_yaml_hold_from_the_next_request(portal):
    reloaded = []
    portal.app.state.portal.on_reload.append(reloaded.append)
    assert portal.submit("owls", portal.variant(0)).status_code == 201
    edit_rules(portal.root, daily_limit=1)
    refused = portal.submit("owls", portal.variant(1))
    assert refused.status_code == 429 and "its 1 submissions" in refused.json()["detail"]
    assert "per team per UTC day: 1" in portal.client.get("/", headers=portal.auth("owls")).text
    edit_rules(portal.root, daily_limit=5, deadline="2020-01-01T00:00:00Z")
    closed = portal.submit("owls", portal.variant(2))
    assert closed.status_code == 403
    assert portal.client.get("/api/leaderboard/private",
                             headers=portal.auth("owls")).status_code == 200
    edit_rules(portal.root, deadline=None, max_submission_mb=0.0005)
    big = portal.submit("owls", portal.sample * 40)
    assert big.status_code == 413 and "size limit" in big.json()["detail"]
    # A broken file keeps the rules in force (and says so in the log).
    time.sleep(0.01)
    (portal.root / "competition.yaml").write_text("rules: [unclosed\n")
    assert portal.submit("owls", portal.sample * 40).status_code == 413
    assert portal.client.get("/api/leaderboard").status_code == 200
    assert len(reloaded) == 3 and reloaded[-1] is portal.app.state.portal.board


# --- CSV exports --------------------------------------------------------------------------

def test_csv_cells_that_would_be_formulas_are_defused():
    for text in ("=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(text) == "'" + text
    for value in ("plain", "a=b", "", -1.5, 3, None, " =1"):
        assert safe_cell(value) == value
    rows = list(csv.reader(io.StringIO(csv_text(["a", "b"], [['=HYPERLINK("x")', -2.0]]))))
    assert rows == [["a", "b"], ["'=HYPERLINK(\"x\")", "-2.0"]]


def test_grades_and_submissions_csv_escape_team_names_and_messages(portal, tmp_path):
    board = Board(PreparedCompetition.open(portal.root))
    team = '=HYPERLINK("http://x","y")'
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(portal.root))
    message = '@SUM(1+1)*cmd|" /C calc"!A0'
    assert board.submissions.submit(path, team, message).status == "scored"
    headers = portal.auth("organizer")
    for url in ("/api/organizer/grades.csv", "/organizer/grades.csv"):
        grades = list(csv.reader(io.StringIO(portal.client.get(url, headers=headers).text)))
        assert grades[1][1] == "'" + team, url
    exported = portal.client.get("/api/organizer/submissions.csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["team"] == "'" + team and rows[0]["message"] == "'" + message
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows
                   for cell in row.values() if cell)
    page = portal.client.get("/organizer/submissions.csv", headers=headers)
    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    assert portal.client.get("/api/organizer/submissions.csv",
                             headers=portal.auth("owls")).status_code == 403


def test_public_files_are_published_when_the_competition_opens(portal):
    """Before the rule `start` a team sees the competition's page and rules, not its data
    (no team works on it ahead of the others); the organizer sees the files; from the start
    on, everyone signed in does."""
    edit_rules(portal.root, start="2999-01-01T00:00:00")
    team, organizer = portal.auth("owls"), portal.auth("organizer")
    for path in ("/files.zip", "/files/sample_submission.csv", "/api/files", "/api/files.zip"):
        refused = portal.client.get(path, headers=team)
        assert refused.status_code == 403, path
        assert "opens at 2999-01-01T00:00:00Z" in refused.json()["detail"]
        assert portal.client.get(path, headers=organizer).status_code == 200, path
    assert portal.client.get("/api/competition", headers=team).json()["public_files"] == []
    page = portal.client.get("/", headers=team).text
    assert 'id="unpublished"' in page and "/files.zip" not in page
    edit_rules(portal.root, start="2000-01-01T00:00:00")
    assert portal.client.get("/files.zip", headers=team).status_code == 200
    assert portal.client.get("/api/competition", headers=team).json()["public_files"]
    assert "/files.zip" in portal.client.get("/", headers=team).text
