"""Sign-in attempts limited per client address and per token prefix (issue 33): guessing
tokens through the login form or as bearer tokens is refused with a 429 past the limits of
competition.yaml's `portal:` settings, while a class behind one address signs in."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.configs import PortalConfig
from competition.interfaces.web.app import create_app
from competition.interfaces.web.sign_in_limits import SignInLimits
from tests.test_web import Portal, form_token

WINDOW = 600


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def set_portal(root: Path, **settings) -> None:
    time.sleep(0.01)  # a new modification time, as an organizer's edit would have
    path = root / "competition.yaml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("portal", {}).update(settings)
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
def portal(demo_dirs, tmp_path) -> Portal:
    root = tmp_path / "comp"
    shutil.copytree(demo_dirs["demo-nuclei"], root)
    return Portal(root)


def limited_app(portal: Portal, trust_proxy: bool = False) -> tuple[TestClient, Clock]:
    """A client of the portal whose sign-in limits run on a clock of the test's."""
    app = create_app(portal.root, trust_proxy=trust_proxy)
    clock = Clock()
    app.state.portal.sign_ins.clock = clock
    return TestClient(app), clock


def try_login(client: TestClient, token: str, address: str | None = None):
    headers = {"X-Forwarded-For": address} if address else {}
    login = client.get("/login", headers=headers)
    return client.post("/login", data={"token": token, "csrf_token": form_token(login.text)},
                       headers=headers, follow_redirects=False)


def test_brute_force_from_one_address_is_refused_until_the_window_passes(portal):
    """Guesses from one address are refused once its failures reach the limit, until the
    window passes; real tokens from that address still sign in (nobody is locked out)."""
    client, clock = limited_app(portal)
    # Read at each attempt: the organizer's edit holds without a restart.
    set_portal(portal.root, sign_in_failures_per_address=5, sign_in_window_seconds=WINDOW)
    for k in range(5):
        r = try_login(client, f"guess-{k:03d}-xxxxxxxxxxxxxxxxxxxxxxxx")
        assert r.status_code == 401 and "unknown token" in r.text
        clock.t += 1
    wrong = try_login(client, "guess-999-xxxxxxxxxxxxxxxxxxxxxxxx")
    assert wrong.status_code == 429, wrong.text
    assert "too many failed sign-ins from your address" in wrong.text
    # The first failure (at t=1000) leaves the window at t=1600; it is t=1005.
    assert wrong.headers["retry-after"] == str(WINDOW - 5)
    assert "competition_session" not in wrong.headers.get("set-cookie", "")
    api = client.get("/api/submissions", headers={"Authorization": "Bearer guess-1000"})
    assert api.status_code == 429 and api.headers["retry-after"] == str(WINDOW - 5)
    assert try_login(client, portal.tokens["owls"]).status_code == 303
    assert client.get("/api/submissions", headers=portal.auth("bats")).status_code == 200
    clock.t += WINDOW - 5
    assert try_login(client, "guess-1001-xxxxxxxxxxxxxxxxxxxxxxxx").status_code == 401


def test_a_class_behind_one_address_signs_in(portal):
    """100 students from one address (the test client's), after a few typos: none is refused
    (successful sign-ins never count against an address)."""
    set_portal(portal.root, sign_in_failures_per_address=5)
    board = Board(PreparedCompetition.open(portal.root))
    tokens = [board.teams.issue_token(f"student {k:03d}") for k in range(100)]
    client, _ = limited_app(portal)
    for k in range(4):
        assert try_login(client, f"typo-{k}").status_code == 401
    statuses = []
    for token in tokens:
        student = TestClient(client.app)  # a browser of its own, the same address
        statuses.append(try_login(student, token).status_code)
        assert student.get("/api/submissions").status_code == 200
    assert statuses == [303] * 100
    assert try_login(client, "typo-4").status_code == 401  # the fifth failure...
    assert try_login(client, "typo-5").status_code == 429  # ...shuts the address's guesses out
    assert try_login(TestClient(client.app), tokens[0]).status_code == 303  # not its students


def test_attempts_at_one_token_prefix_are_limited_across_addresses(portal):
    set_portal(portal.root, sign_in_attempts_per_token_prefix=3)
    client, clock = limited_app(portal, trust_proxy=True)
    owls = portal.tokens["owls"]
    for k in range(3):  # guesses at the rest of a token whose beginning leaked
        r = try_login(client, owls[:8] + f"guess{k}", address=f"203.0.113.{k}")
        assert r.status_code == 401
    refused = try_login(client, owls[:8] + "guess9", address="198.51.100.7")
    assert refused.status_code == 429 and "tokens beginning like this one" in refused.text
    assert int(refused.headers["retry-after"]) == WINDOW
    assert try_login(client, owls, address="198.51.100.7").status_code == 303  # its owner
    # Other tokens, from the same addresses, are not affected.
    assert try_login(client, portal.tokens["bats"], address="203.0.113.0").status_code == 303
    # The address a trusted proxy appended counts, not what the client wrote before it.
    set_portal(portal.root, sign_in_failures_per_address=2)
    for k in range(2):
        forged = f"10.0.0.{k}, 192.0.2.1"
        assert try_login(client, f"wrong-{k}", address=forged).status_code == 401
    assert try_login(client, "wrong-2", address="10.9.9.9, 192.0.2.1").status_code == 429
    assert try_login(client, "wrong-3", address="192.0.2.2").status_code == 401
    clock.t += WINDOW
    assert try_login(client, owls, address="198.51.100.7").status_code == 303


def test_unknown_bearer_tokens_count_as_failed_sign_ins(portal):
    set_portal(portal.root, sign_in_failures_per_address=4, sign_in_attempts_per_token_prefix=3)
    client, clock = limited_app(portal, trust_proxy=True)
    here = {"X-Forwarded-For": "203.0.113.5"}
    for k in range(4):
        r = client.get("/api/submissions", headers={**here, "Authorization": f"Bearer x{k}"})
        assert r.status_code == 401
    refused = client.get("/api/submissions", headers={**here, "Authorization": "Bearer x9"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == str(WINDOW)
    assert "too many failed sign-ins" in refused.json()["detail"]
    assert try_login(client, "x10", address="203.0.113.5").status_code == 429
    # Known tokens from that address still work, on the API and the pages.
    assert client.get("/api/submissions", headers={**here, **portal.auth("owls")}
                      ).status_code == 200
    assert try_login(client, portal.tokens["owls"], address="203.0.113.5").status_code == 303
    # A page asked with a refused bearer token is served as to nobody (no server error).
    page = client.get("/no-such-page", headers={**here, "Authorization": "Bearer x11",
                                                 "Accept": "text/html"})
    assert page.status_code == 404
    # Valid bearer tokens, however many requests, never count.
    there = {"X-Forwarded-For": "198.51.100.1"}
    for _ in range(20):
        assert client.get("/api/submissions", headers={**there, **portal.auth("bats")}
                          ).status_code == 200
    # Unknown bearer tokens count against their prefix too, from any address.
    moths = portal.tokens["moths"]
    for k in range(3):
        r = client.get("/api/submissions", headers={
            "X-Forwarded-For": f"192.0.2.{k}", "Authorization": f"Bearer {moths[:8]}{k}"})
        assert r.status_code == 401
    assert client.get("/api/submissions", headers={
        **there, "Authorization": f"Bearer {moths[:8]}9"}).status_code == 429
    assert client.get("/api/submissions", headers={**there, **portal.auth("moths")}
                      ).status_code == 200
    clock.t += WINDOW
    assert client.get("/api/submissions", headers={**here, "Authorization": "Bearer x12"}
                      ).status_code == 401


def test_the_same_token_again_is_no_new_guess(portal):
    """A script polling with a replaced token, and a team signing in on many machines, use up
    no limit: a token counts once per window."""
    set_portal(portal.root, sign_in_failures_per_address=3, sign_in_attempts_per_token_prefix=3)
    client, _ = limited_app(portal, trust_proxy=True)
    stale = {"Authorization": "Bearer a-replaced-token", "X-Forwarded-For": "203.0.113.9"}
    for _ in range(50):
        assert client.get("/api/submissions", headers=stale).status_code == 401
    for k in range(10):
        assert try_login(client, portal.tokens["owls"], address=f"203.0.113.{k}"
                         ).status_code == 303
    # Two more distinct wrong tokens make the third failure: now the address's guesses are
    # shut out.
    for k in range(2):
        assert try_login(client, f"other-guess-{k}", address="203.0.113.9").status_code == 401
    assert try_login(client, "other-guess-2", address="203.0.113.9").status_code == 429


def test_the_limiter_is_bounded_and_thread_safe():
    rules = PortalConfig(sign_in_failures_per_address=1, sign_in_attempts_per_token_prefix=5,
                         sign_in_window_seconds=60)
    clock = Clock()
    limits = SignInLimits(clock, max_keys=3)
    assert limits.refused("a", "t", rules) is None  # counted
    assert limits.refused("a", "u", rules) is not None
    for address in ("b", "c", "d"):  # three more addresses: "a", the oldest, is forgotten
        assert limits.refused(address, f"t-{address}", rules) is None
    assert limits.refused("a", "v", rules) is None
    assert limits.refused("d", "w", rules) is not None

    many = PortalConfig(sign_in_failures_per_address=1600,
                        sign_in_attempts_per_token_prefix=1600)
    shared = SignInLimits(clock)
    counted = []

    def fail(k: int) -> None:
        for i in range(100):
            counted.append(shared.refused("10.0.0.1", f"guess {k:02d} {i:03d}", many) is None)

    threads = [threading.Thread(target=fail, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counted == [True] * 1600  # none refused, all 1600 counted...
    refusal = shared.refused("10.0.0.1", "u", many)
    assert refusal is not None and refusal.retry_after == 600  # ...so the next one is
