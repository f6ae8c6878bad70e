"""Editing the rules and the description (issue 28): from the organizer's pages, the API and
`competition rules --set`, through the same model and messages as competition.yaml, in force
from the next request, recorded and shown; participants cannot edit; stale forms get 409."""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from html.parser import HTMLParser

import pytest
import yaml

from competition.board import rule_edits
from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from tests.test_bad_input import run_cli
from tests.test_web import Portal
from tests.test_web_security import sign_in

PAST = "2020-01-01T00:00:00Z"


@pytest.fixture
def portal(demo_dirs, tmp_path) -> Portal:
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    return Portal(root, daily_limit=3)


@pytest.fixture
def stored_portal(demo_dirs, tmp_path, store_url, monkeypatch):
    """The portal on SQLite and on PostgreSQL (the CLI and the helper's Board use the same
    store, through COMPETITION_STORE_URL)."""
    if store_url:
        monkeypatch.setenv("COMPETITION_STORE_URL", store_url)
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    served = Portal(root, daily_limit=3)
    yield served
    # Its scoring jobs' thread stops before the PostgreSQL server does (no retries logged
    # against a server that is gone).
    served.app.state.portal.stop_jobs()


class _Form(HTMLParser):
    """The fields of one form of a page, as a browser would send them."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.values = form_id, False, {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input":
            self.values[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self.select = a["name"]
        elif tag == "option" and self.select and "selected" in a:
            self.values[self.select] = a.get("value")
        elif tag == "textarea":
            self.textarea = a["name"]
            self.values[self.textarea] = ""

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "form":
            self.inside = False


def form_of(html: str, form_id: str) -> dict[str, str]:
    parser = _Form(form_id)
    parser.feed(html)
    return parser.values


def config_bytes(portal: Portal) -> bytes:
    return (portal.root / "competition.yaml").read_bytes()


def history(portal: Portal) -> list[dict]:
    return portal.client.get("/api/organizer/rules",
                             headers=portal.auth("organizer")).json()["changes"]


# --- the page -----------------------------------------------------------------------------

def test_a_rule_edited_on_the_page_holds_from_the_next_request(portal):
    assert portal.submit("owls", portal.variant(0)).status_code == 201
    c = portal.client
    sign_in(c, portal.tokens["organizer"])
    page = c.get("/organizer/rules")
    assert page.status_code == 200
    form = form_of(page.text, "rules-form")
    assert form["daily_limit"] == "3" and form["deadline"] == "" and form["csrf_token"]
    assert "public_fraction" not in form  # fixed by prepare
    saved = c.post("/organizer/rules", data={**form, "daily_limit": "1"},
                   headers={"Origin": "http://testserver"})
    assert saved.status_code == 200 and 'id="saved"' in saved.text
    assert form_of(saved.text, "rules-form")["daily_limit"] == "1"  # shown as in force
    refused = portal.submit("owls", portal.variant(1))
    assert refused.status_code == 429 and "its 1 submissions" in refused.json()["detail"]

    # The deadline moved into the past: closed at once.
    form = form_of(c.get("/organizer/rules").text, "rules-form")
    assert c.post("/organizer/rules", data={**form, "deadline": PAST}).status_code == 200
    assert portal.submit("bats", portal.variant(2)).status_code == 403
    assert yaml.safe_load(config_bytes(portal))["rules"]["deadline"] == PAST
    # Recorded: who, what, before and after.
    changes = [(h["who"], h["field"], h["old"], h["new"]) for h in history(portal)]
    assert changes == [("organizer (page)", "deadline", None, PAST),
                       ("organizer (page)", "daily_limit", 3, 1)]


def test_an_invalid_value_on_the_page_is_shown_by_its_field_and_nothing_is_written(portal):
    c = portal.client
    sign_in(c, portal.tokens["organizer"])
    form = form_of(c.get("/organizer/rules").text, "rules-form")
    before = config_bytes(portal)
    for field, value, says in (("daily_limit", "0", "greater than 0"),
                               ("daily_limit", "many", "valid integer"),
                               ("deadline", "next friday", "not an ISO date-time"),
                               ("max_submission_mb", "-1", "greater than 0")):
        r = c.post("/organizer/rules", data={**form, "final_selections": "4", field: value})
        assert r.status_code == 422, (field, value)
        error = re.search(rf'id="error-{field}">([^<]*)<', r.text)
        assert error and f"rules.{field}" in error.group(1) and says in error.group(1)
        # The form keeps what was typed, for correcting it.
        assert form_of(r.text, "rules-form")[field] == value
        assert config_bytes(portal) == before
    assert history(portal) == []


def test_participants_cannot_edit_the_rules_or_the_description(portal):
    before = config_bytes(portal)
    readme = (portal.root / "public" / "README.md").read_bytes()
    c = portal.client
    for headers, status in (({}, 401), (portal.auth("owls"), 403),
                            ({"Authorization": "Bearer not-a-token"}, 401)):
        assert c.patch("/api/organizer/rules", json={"daily_limit": 50},
                       headers=headers).status_code == status
        assert c.put("/api/organizer/rules", json={"daily_limit": 50},
                     headers=headers).status_code == status
        assert c.get("/api/organizer/rules", headers=headers).status_code == status
        assert c.put("/api/organizer/description", json={"description": "# mine"},
                     headers=headers).status_code == status
    csrf = sign_in(c, portal.tokens["owls"])  # a team's own session and CSRF token
    for path, data in (("/organizer/rules", {"daily_limit": "50"}),
                       ("/organizer/description", {"description": "# mine"})):
        assert c.get(path).status_code == 403
        assert c.post(path, data={**data, "csrf_token": csrf}).status_code == 403
    assert config_bytes(portal) == before
    assert (portal.root / "public" / "README.md").read_bytes() == readme


def test_the_forms_need_the_csrf_token_and_the_portals_own_origin(portal):
    c = portal.client
    sign_in(c, portal.tokens["organizer"])
    rules = form_of(c.get("/organizer/rules").text, "rules-form")
    text = form_of(c.get("/organizer/description").text, "description-form")
    before = config_bytes(portal)
    readme = (portal.root / "public" / "README.md").read_bytes()
    for path, form, change in (("/organizer/rules", rules, {"daily_limit": "50"}),
                               ("/organizer/description", text, {"description": "# mine"})):
        without = {k: v for k, v in form.items() if k != "csrf_token"}
        assert c.post(path, data={**without, **change}).status_code == 403
        assert c.post(path, data={**form, **change, "csrf_token": "forged"}).status_code == 403
        foreign = c.post(path, data={**form, **change},
                         headers={"Origin": "http://testserver:8081"})
        assert foreign.status_code == 403 and "another site" in foreign.text
    assert config_bytes(portal) == before
    assert (portal.root / "public" / "README.md").read_bytes() == readme
    assert history(portal) == []


def test_a_stale_form_gets_409_and_loses_nobodys_edit(portal):
    c = portal.client
    sign_in(c, portal.tokens["organizer"])
    first = form_of(c.get("/organizer/rules").text, "rules-form")
    second = dict(first)  # another organizer's tab, opened at the same time
    assert c.post("/organizer/rules", data={**first, "daily_limit": "7"}).status_code == 200
    stale = c.post("/organizer/rules", data={**second, "final_selections": "1"})
    assert stale.status_code == 409 and "changed since this form was shown" in stale.text
    rules = yaml.safe_load(config_bytes(portal))["rules"]
    assert (rules["daily_limit"], rules["final_selections"]) == (7, 2)
    # The API: If-Match with the ETag read.
    h = portal.auth("organizer")
    etag = c.get("/api/organizer/rules", headers=h).headers["etag"]
    assert c.patch("/api/organizer/rules", json={"daily_limit": 4},
                   headers={**h, "If-Match": etag}).status_code == 200
    late = c.patch("/api/organizer/rules", json={"daily_limit": 9},
                   headers={**h, "If-Match": etag})
    assert late.status_code == 409 and "changed since" in late.json()["detail"]
    assert yaml.safe_load(config_bytes(portal))["rules"]["daily_limit"] == 4
    # `If-Match: *` (any version) and no If-Match at all: the edit applies to what is there.
    assert c.patch("/api/organizer/rules", json={"daily_limit": 6},
                   headers={**h, "If-Match": "*"}).status_code == 200
    assert yaml.safe_load(config_bytes(portal))["rules"]["daily_limit"] == 6


# --- the API and the store (SQLite and PostgreSQL) ----------------------------------------

def test_the_api_edits_rules_with_the_models_messages_and_records_them(stored_portal):
    portal = stored_portal
    c, h = portal.client, portal.auth("organizer")
    before = config_bytes(portal)
    for body, says in (({"daily_limit": 0}, "rules.daily_limit: Input should be greater than 0"),
                       ({"daly_limit": 1}, "unknown key rules.daly_limit (did you mean "
                                           "rules.daily_limit?)"),
                       ({"deadline": "soon"}, "rules.deadline: 'soon' is not an ISO date-time"),
                       ({"late_submissions": "perhaps"}, "rules.late_submissions"),
                       ({"ranking": "alphabetical"}, "rules.ranking"),
                       ({"public_fraction": 0.5}, "rules.public_fraction: the split"),
                       # What a form or a script can send but a store or a clock cannot hold.
                       ({"daily_limit": 10**20}, "rules.daily_limit: 100000000000000000000 "
                                                 "is too large (at most 2,147,483,647)"),
                       ({"max_submission_mb": "inf"}, "rules.max_submission_mb: inf is not a "
                                                      "finite number"),
                       ({"deadline": "9999-12-31T23:59:59-05:00"}, "out of range in UTC")):
        r = c.patch("/api/organizer/rules", json=body, headers=h)
        assert r.status_code == 422 and says in r.json()["detail"], (body, r.text)
        assert r.json()["detail"].startswith("competition.yaml: ")  # no server path
        assert str(portal.root) not in r.text
    assert config_bytes(portal) == before

    assert portal.submit("owls", portal.variant(0)).status_code == 201
    r = c.patch("/api/organizer/rules", json={"daily_limit": 1, "late_submissions": True},
                headers=h)
    assert r.status_code == 200
    assert {(x["field"], x["old"], x["new"]) for x in r.json()["changed"]} == {
        ("daily_limit", 3, 1), ("late_submissions", False, True)}
    assert portal.submit("owls", portal.variant(1)).status_code == 429
    assert c.patch("/api/organizer/rules", json={"deadline": PAST, "daily_limit": 4},
                   headers=h).status_code == 200
    late = portal.submit("owls", portal.variant(2))  # taken late, under the rule
    assert late.status_code == 201 and late.json()["late"] is True
    # Turning the rule off would rank the late one (lateness is read from the rule): refused,
    # and it stays off the board.
    off = c.put("/api/organizer/rules", json={"deadline": PAST}, headers=h)
    assert off.status_code == 422
    assert "rules.late_submissions: 2 submission(s) were made after the deadline" in \
        off.json()["detail"]
    assert c.get("/api/leaderboard", headers=h).json() == []
    # PUT sets every editable rule: those not given return to their defaults.
    r = c.put("/api/organizer/rules", json={"deadline": PAST, "late_submissions": True},
              headers=h)
    assert r.status_code == 200 and r.json()["rules"]["late_submissions"] is True
    assert r.json()["rules"]["daily_limit"] == 5  # the default
    assert portal.submit("owls", portal.variant(3)).json()["late"] is True
    # Nothing to change: nothing written, nothing recorded.
    signature = r.json()["signature"]
    same = c.patch("/api/organizer/rules", json={"deadline": "2020-01-01"}, headers=h)
    assert same.json()["changed"] == [] and same.json()["signature"] == signature

    changes = history(portal)
    # Newest first; one row per rule changed (the PUT changed daily_limit alone).
    assert [(x["field"], x["old"], x["new"]) for x in changes] == [
        ("daily_limit", 4, 5), ("daily_limit", 1, 4), ("deadline", None, PAST),
        ("late_submissions", False, True), ("daily_limit", 3, 1)]
    assert {x["who"] for x in changes} == {"organizer (API)"}
    assert all(x["changed_at"].endswith("Z") for x in changes)
    # Participants see the history (what, when, before, after), not who.
    public = c.get("/api/competition", headers=portal.auth("owls")).json()["rule_changes"]
    assert [(x["field"], x["old"], x["new"]) for x in public] == \
        [(x["field"], x["old"], x["new"]) for x in changes]
    assert all("who" not in x for x in public)
    home = c.get("/", headers=portal.auth("owls")).text
    table = home.split('id="rule-changes">', 1)[1].split("</table>", 1)[0]
    assert "<td>deadline</td><td>none</td><td>2020-01-01 00:00:00 UTC</td>" in table
    assert "organizer (API)" not in table
    organizer = c.get("/organizer", headers=h).text
    assert "organizer (API)" in organizer.split('id="rule-changes">', 1)[1]


def test_concurrent_edits_lose_none_of_each_other(stored_portal):
    portal = stored_portal
    board = Board(PreparedCompetition.open(portal.root))
    edits = {"daily_limit": 7, "final_selections": 3, "uploads_per_hour": 11,
             "max_message_chars": 99, "scoring_cpu_seconds": 60, "late_submissions": True}
    errors = []

    def edit(key, value):
        try:
            rule_edits.edit_rules(portal.root, board.engine, {key: value}, "test")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=edit, args=item) for item in edits.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rules = yaml.safe_load(config_bytes(portal))["rules"]
    assert {k: rules[k] for k in edits} == edits
    assert sorted(h["field"] for h in rule_edits.history_json(
        rule_edits.history(board.engine), who=True)) == sorted(edits)
    board.engine.dispose()


def test_the_cli_shows_and_edits_the_rules_and_records_the_os_user(stored_portal, capsys):
    import getpass

    portal = stored_portal
    root = portal.root
    code, out, err = run_cli(["rules", root], capsys)
    assert code == 0 and "daily_limit" in out and "Rules in force" in out, err
    code, out, err = run_cli(["rules", root, "--set", "deadline=2026-12-31T23:59Z",
                              "--set", "daily_limit=2"], capsys)
    assert code == 0 and "changed: deadline, daily_limit" in out, err
    rules = yaml.safe_load(config_bytes(portal))["rules"]
    assert (rules["deadline"], rules["daily_limit"]) == ("2026-12-31T23:59:00Z", 2)
    # The running portal has them from its next request.
    body = portal.client.get("/api/competition", headers=portal.auth("owls")).json()
    assert body["rules"]["daily_limit"] == 2
    assert body["rules"]["deadline"] == "2026-12-31T23:59:00Z"
    before = config_bytes(portal)
    for sets, says in ((["daily_limit=0"], "rules.daily_limit: Input should be greater than 0"),
                       (["daily_limit=1", "dealine=2027-01-01"],
                        "unknown key rules.dealine (did you mean rules.deadline?)"),
                       (["daily_limit"], "expected RULE=VALUE")):
        code, _, err = run_cli(["rules", root, *[f"--set={s}" for s in sets]], capsys)
        assert code == 2 and says in err.replace("\n", " ") and "Traceback" not in err
    assert config_bytes(portal) == before
    code, out, _ = run_cli(["rules", root, "--set", "deadline=none", "--json"], capsys)
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["rules"]["deadline"] is None and shown["changed"] == [
        {"field": "deadline", "old": "2026-12-31T23:59:00Z", "new": None}]
    whos = {h["who"] for h in shown["changes"]}
    assert whos == {f"cli:{getpass.getuser()}"}
    # The description, from a Markdown file.
    handout = root / "handout.md"
    handout.write_text("# The course\n\nWelcome.\n")
    code, out, err = run_cli(["rules", root, "--description", handout], capsys)
    assert code == 0 and "changed: description" in out, err
    assert (root / "public" / "README.md").read_text() == "# The course\n\nWelcome.\n"
    handout.write_bytes(b"\xff\xfe not UTF-8")
    code, _, err = run_cli(["rules", root, "--description", handout], capsys)
    assert code == 2 and "--description" in err and "UTF-8" in err
    handout.write_text("x" * (2 * rule_edits.MAX_DESCRIPTION_BYTES + 1))
    code, _, err = run_cli(["rules", root, "--description", handout], capsys)
    assert code == 2 and "description: " in err and "over the limit" in err
    code, out, _ = run_cli(["rules", root, "--json"], capsys)
    [latest, *_] = yaml.safe_load(out)["changes"]
    assert (latest["field"], latest["who"]) == ("description", f"cli:{getpass.getuser()}")


def test_an_edit_keeps_every_other_key_and_the_comments(portal):
    path = portal.root / "competition.yaml"
    text = path.read_text()
    text = text.replace("rules:\n", "# the course's rules, agreed with the TAs\nrules:\n")
    text = re.sub(r"(\n  daily_limit: 3)", r"\1  # three a day", text)
    path.write_text(text)
    before = yaml.safe_load(text)
    r = portal.client.patch("/api/organizer/rules", json={"daily_limit": 4, "start": PAST},
                            headers=portal.auth("organizer"))
    assert r.status_code == 200
    after_text = path.read_text()
    assert "# the course's rules, agreed with the TAs\n" in after_text
    assert "  daily_limit: 4  # three a day\n" in after_text
    after = yaml.safe_load(after_text)
    before["rules"].update(daily_limit=4, start=PAST)
    assert after == before
    # Only the changed lines differ.
    changed = [line for line in after_text.splitlines() if line not in text.splitlines()]
    assert changed == ["  daily_limit: 4  # three a day", "  start: '2020-01-01T00:00:00Z'"]
    assert not list(portal.root.glob(".competition.yaml.*.tmp"))


# --- the description ----------------------------------------------------------------------

HOSTILE = """# Welcome to the course

Read **everything**.

<script>alert(1)</script>
<img src=x onerror=alert(3)>

[a link](javascript:alert(2)) and [another](JaVaScRiPt:alert(5))
![a picture](javascript:alert(4))
"""


def test_the_description_is_edited_on_its_page_and_shown_sanitised(portal):
    c = portal.client
    sign_in(c, portal.tokens["organizer"])
    form = form_of(c.get("/organizer/description").text, "description-form")
    readme = portal.root / "public" / "README.md"
    old = readme.read_bytes()
    assert form["description"].strip() == old.decode().strip()
    saved = c.post("/organizer/description",
                   data={**form, "description": HOSTILE.replace("\n", "\r\n")})
    assert saved.status_code == 200 and 'id="saved"' in saved.text
    assert readme.read_text() == HOSTILE  # stored with plain line ends
    for html in (c.get("/", headers=portal.auth("owls")).text, saved.text):
        description = html.split('aria-label="Description">', 1)[1].split("</section>", 1)[0]
        assert "<h1>Welcome to the course</h1>" in description
        assert "<strong>everything</strong>" in description
        assert "<script" not in description.lower()
        assert not re.search(r"<[a-z][^>]*\son\w+\s*=", description, re.I)  # no handler
        assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", description, re.I)
    # The public file is the new text; the history has both versions' hash and length.
    assert c.get("/files/README.md", headers=portal.auth("owls")).text == HOSTILE
    [change] = history(portal)
    assert change["field"] == "description" and change["who"] == "organizer (page)"
    assert change["old"] == {"sha256": hashlib.sha256(old).hexdigest(), "bytes": len(old)}
    assert change["new"]["sha256"] == hashlib.sha256(HOSTILE.encode()).hexdigest()
    page = c.get("/organizer").text.split('id="rule-changes">', 1)[1]
    assert f"version {change['new']['sha256'][:12]} ({len(HOSTILE.encode()):,} bytes)" in page
    # The same form again (stale) is a 409 and changes nothing.
    stale = c.post("/organizer/description", data={**form, "description": "# other"})
    assert stale.status_code == 409 and readme.read_text() == HOSTILE


def test_a_description_over_the_limit_is_refused_naming_it(portal):
    c, h = portal.client, portal.auth("organizer")
    readme = portal.root / "public" / "README.md"
    old = readme.read_bytes()
    big = "x" * (rule_edits.MAX_DESCRIPTION_BYTES + 1)
    r = c.put("/api/organizer/description", json={"description": big}, headers=h)
    assert r.status_code == 413 and r.json()["detail"].startswith("description: ")
    assert "204,800 bytes" in r.json()["detail"]
    sign_in(c, portal.tokens["organizer"])
    form = form_of(c.get("/organizer/description").text, "description-form")
    page = c.post("/organizer/description", data={**form, "description": big})
    assert page.status_code == 413 and "description: " in page.text
    assert readme.read_bytes() == old and history(portal) == []
    # JSON can carry a lone surrogate, which no file can hold: a 422, not a 500.
    odd = c.put("/api/organizer/description", content=b'{"description": "a\\ud800"}',
                headers={**h, "Content-Type": "application/json"})
    assert odd.status_code == 422 and odd.json()["detail"].startswith("description: ")
    assert readme.read_bytes() == old
    # At the limit it is taken, through the API with its ETag.
    etag = c.get("/api/organizer/description", headers=h).headers["etag"]
    fits = "é" * (rule_edits.MAX_DESCRIPTION_BYTES // 2)
    r = c.put("/api/organizer/description", json={"description": fits},
              headers={**h, "If-Match": etag})
    assert r.status_code == 200 and r.json()["changed"] is True
    assert readme.read_text() == fits
    assert not list(portal.root.glob("**/.README.md.*.tmp"))  # no temporary file is left
    again = c.put("/api/organizer/description", json={"description": "# x"},
                  headers={**h, "If-Match": etag})
    assert again.status_code == 409 and readme.read_text() == fits


def test_a_file_broken_by_hand_is_named_and_not_overwritten(portal):
    path = portal.root / "competition.yaml"
    broken = path.read_text().replace("daily_limit: 3", "daily_limit: -3")
    path.write_text(broken)
    c, h = portal.client, portal.auth("organizer")
    r = c.get("/api/organizer/rules", headers=h)
    assert r.status_code == 409 and "rules.daily_limit" in r.json()["detail"]
    edit = c.patch("/api/organizer/rules", json={"final_selections": 1}, headers=h)
    assert edit.status_code == 422 and "rules.daily_limit" in edit.json()["detail"]
    assert path.read_text() == broken
    # Correcting it through the edit itself is fine.
    fixed = c.patch("/api/organizer/rules", json={"daily_limit": 2}, headers=h)
    assert fixed.status_code == 200 and "daily_limit: 2" in path.read_text()
