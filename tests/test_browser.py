"""A real browser (Debian's Chromium, driven by Playwright) against a running portal: a team
signs in with its token, uploads an invalid file and sees the error, uploads a valid one and
sees its score and its row on the leaderboard. Screenshots go to $COMPETITION_SCREENSHOT_DIR
(the README's come from there) or to the test's temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.test_bad_input import nuclei_valid
from tests.test_web import running_server  # noqa: F401 (fixture)

CHROMIUM = os.environ.get("COMPETITION_CHROMIUM", "/usr/bin/chromium")
# Chromium's background services try to reach the internet, which this machine cannot.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic"]


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)"
        if os.environ.get("COMPETITION_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1180, "height": 720})
        yield page
        browser.close()


def test_team_signs_in_submits_and_finds_itself_on_the_leaderboard(
        running_server, browser_page, tmp_path):  # noqa: F811
    portal, page = running_server, browser_page
    shots = Path(os.environ.get("COMPETITION_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    # Two other teams are already on the board (through the JSON API).
    from competition.demo import naive_nuclei

    for team, data in (("bats", portal.variant(0)), ("moths", naive_nuclei(portal.root /
                                                                           "public"))):
        r = httpx.post(portal.url + "/api/submissions", headers=portal.auth(team),
                       files={"file": ("baseline.csv", data)}, timeout=120)
        assert r.status_code == 201

    page.goto(portal.url + "/submit")
    assert page.url.endswith("/login")  # a token is needed
    page.fill("input[name=token]", portal.tokens["owls"])
    page.click("main form button")
    assert "sample_submission.csv" in page.content()
    page.screenshot(path=str(shots / "portal-competition.png"), full_page=False)

    bad = tmp_path / "predictions.csv"
    bad.write_text("Id,Pixels\nabc,1 1\n")
    page.goto(portal.url + "/submit")
    page.set_input_files("input[name=file]", str(bad))
    page.click("main form button")
    error = page.text_content("#error")
    assert "predictions.csv: line 1" in error and "header is" in error
    page.screenshot(path=str(shots / "portal-invalid.png"))

    good = tmp_path / "unet.csv"
    good.write_text(nuclei_valid(portal.root))
    page.set_input_files("input[name=file]", str(good))
    page.fill("input[name=message]", "first U-Net")
    page.click("main form button")
    assert page.text_content("#public-score") == "1.000000"
    assert "private" not in page.text_content("#result").lower()
    page.screenshot(path=str(shots / "portal-scored.png"))

    page.goto(portal.url + "/submissions")
    assert "first U-Net" in page.content()
    page.goto(portal.url + "/leaderboard")
    rows = page.locator("#leaderboard tbody tr").all_text_contents()
    assert "owls" in rows[0] and "1.000000" in rows[0]
    assert "moths" in rows[1] and "bats" in rows[2]
    page.screenshot(path=str(shots / "portal-leaderboard.png"))
    shutil.copy(shots / "portal-leaderboard.png", tmp_path / "last.png")
