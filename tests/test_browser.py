"""A real browser (Debian's Chromium, driven by Playwright) against a running portal: a team
signs in with its token through the login form (its CSRF token and the browser's Origin
included), uploads an invalid file and sees the error, uploads a valid one and sees its
score and its row on the leaderboard, then signs out, which revokes its session. Screenshots
go to $COMPETITION_SCREENSHOT_DIR (the README's come from there) or to the test's temporary
folder."""

from __future__ import annotations

import re
import shutil

import httpx

from competition.board.prepared import PreparedCompetition
from tests.browser import browser_page, chromium, screenshot_dir  # noqa: F401 (fixtures)
from tests.test_bad_input import nuclei_valid
from tests.test_web import running_server  # noqa: F401 (fixture)


def test_team_signs_in_submits_and_finds_itself_on_the_leaderboard(
        running_server, browser_page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    portal, page = running_server, browser_page
    shots = screenshot_dir(tmp_path)
    # Two other teams are already on the board (through the JSON API).
    public = portal.root / "public"
    day_one = PreparedCompetition.open(portal.root).task.naive_submission(public)
    for team, data in (("bats", portal.variant(0)), ("moths", day_one)):
        r = httpx.post(portal.url + "/api/submissions", params={"wait": 60},
                       headers=portal.auth(team),
                       files={"file": ("baseline.csv", data)}, timeout=120)
        assert r.status_code == 201

    page.goto(portal.url + "/submit")
    expect(page).to_have_url(re.compile(r"/login$"))  # a token is needed
    page.get_by_label("Token").fill(portal.tokens["owls"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("link", name="sample_submission.csv")).to_be_visible()
    page.screenshot(path=str(shots / "portal-competition.png"), full_page=False)

    bad = tmp_path / "predictions.csv"
    bad.write_text("Id,Pixels\nabc,1 1\n")
    page.goto(portal.url + "/submit")
    page.get_by_label("File").set_input_files(str(bad))
    page.get_by_role("button", name="Submit", exact=True).click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("predictions.csv: line 1")
    expect(error).to_contain_text("header is")
    page.screenshot(path=str(shots / "portal-invalid.png"))

    good = tmp_path / "unet.csv"
    good.write_text(nuclei_valid(portal.root))
    page.get_by_label("File").set_input_files(str(good))
    page.get_by_label("Message").fill("first U-Net")
    page.get_by_role("button", name="Submit", exact=True).click()
    result = page.get_by_role("status")
    expect(result).to_contain_text(re.compile(r"public score 1\.000000\b"))
    expect(result).not_to_contain_text(re.compile("private", re.IGNORECASE))
    page.screenshot(path=str(shots / "portal-scored.png"))

    page.goto(portal.url + "/submissions")
    expect(page.get_by_role("cell", name="first U-Net")).to_be_visible()
    page.goto(portal.url + "/leaderboard")
    # The body's rows: those with data cells (the header row has column headers only).
    rows = page.get_by_role("table").get_by_role("row").filter(has=page.get_by_role("cell"))
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("owls")
    expect(rows.nth(0)).to_contain_text("1.000000")
    expect(rows.nth(1)).to_contain_text("moths")
    expect(rows.nth(2)).to_contain_text("bats")
    page.screenshot(path=str(shots / "portal-leaderboard.png"))
    shutil.copy(shots / "portal-leaderboard.png", tmp_path / "last.png")

    # The browser holds a session id, not the token (HttpOnly, SameSite=Strict); signing out
    # through the page's form revokes it: a copy of the cookie no longer works.
    cookie = next(c for c in page.context.cookies() if c["name"] == "competition_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != portal.tokens["owls"]
    copied = {"competition_session": cookie["value"]}
    assert httpx.get(portal.url + "/api/submissions", cookies=copied).status_code == 200
    page.get_by_role("button", name="Sign out owls").click()
    expect(page).to_have_url(re.compile(r"/leaderboard$"))
    assert httpx.get(portal.url + "/api/submissions", cookies=copied).status_code == 401
    page.goto(portal.url + "/submit")
    expect(page).to_have_url(re.compile(r"/login$"))
