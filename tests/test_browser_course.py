"""A course run through a real browser (issue 28): one `competition serve COURSE` process
serves two competitions (nuclei, then em made from the portal); the organizer has imported a
roster of 60 students (teams of 2 and 3, and ten students without a team) with `competition
roster import`. Through the pages, as people would:

- the course organizer (`competition organizer-token --course`) signs in and creates the
  second competition (em) on the course's `/organizer` form; the roster is imported into it
  too (no token changes); it moves em's deadline on em's rules page;
- on nuclei's rules page it moves the deadline and sets a merger deadline and a team size
  limit, and sees the change and its history;
- students of two teams sign in once with their own tokens and submit each competition's
  public sample submission through its submit page, and see their scores;
- on the Team page one student makes an invitation code, a student without a team joins with
  it, another student leaves;
- the organizer moves the merger deadline into the past on the rules page: a join (with a
  code made before, from a Team page loaded before) is refused, naming the merger deadline;
- the organizer downloads the grades CSV through the organizer page's link: every one of the
  60 students is in it by name.

Screenshots go to $COMPETITION_SCREENSHOT_DIR (the README's come from there) or to the
test's temporary folder."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.browser import VIEWPORT, chromium, screenshot_dir, served, sign_in  # noqa: F401
from tests.test_bad_input import run_cli
from tests.test_roster import sheet_rows, write_roster

FIRST = ["Ana", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena"]
LAST = ["Silva", "Chen", "Diaz", "Ito", "Kowalski"]
SAMPLES = {"nuclei": "sample_submission.csv", "em": "sample_submission.tif"}
TITLES = {"nuclei": "Nuclei instance segmentation (DSB 2018)",
          "em": "EM membrane segmentation (ISBI 2012)"}


def roster_rows() -> list[dict[str, str]]:
    """60 students: the first 50 in teams of 3 and 2 (Team 01: 3, Team 02: 2, ...), the last
    ten without a team (each alone, in a team named after them)."""
    rows = []
    team_of: list[str] = []
    for k, size in enumerate([3, 2] * 10):
        team_of += [f"Team {k + 1:02d}"] * size
    for k in range(60):
        first, last = FIRST[k % len(FIRST)], LAST[k // len(FIRST)]
        rows.append({"name": f"{first} {last}", "id": f"s{k + 1:03d}",
                     "email": f"{first.lower()}.{last.lower()}@uni.example",
                     "team": team_of[k] if k < len(team_of) else ""})
    return rows


def create_from_the_portal(boss: Any, url: str, slug: str, kind: str, title: str,
                           deadline: str) -> None:
    """The course organizer's form (`/organizer`): a synthetic kind needs no source; the
    job's page refreshes itself until the competition is served at /c/SLUG/."""
    from playwright.sync_api import expect

    boss.goto(url + "/organizer")
    boss.get_by_label("Kind").select_option(kind)
    boss.get_by_label(re.compile("^Slug")).fill(slug)
    boss.get_by_label("Title").fill(title)
    boss.get_by_label("Deadline (UTC)").fill(deadline)
    boss.get_by_role("button", name="Create").click()
    expect(boss.locator("#status")).to_contain_text("done", timeout=180_000)
    boss.get_by_role("link", name=f"/c/{slug}/").click()
    expect(boss.get_by_role("heading", level=1).first).to_contain_text(title)
    expect(boss.get_by_role("link", name="Organizer", exact=True)).to_be_visible()


def utc(moment: datetime) -> str:
    """As the form takes a time (and the team pages and refusals show it)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(moment: str) -> str:
    """A time as the history of changes shows it."""
    return moment.replace("T", " ").replace("Z", " UTC")


def edit_rules(page: Any, url: str, **rules: str) -> None:
    """On the rules page (from the organizer page's link): set the rules given, save, and
    see them in force."""
    from playwright.sync_api import expect

    page.goto(url + "/organizer")
    page.get_by_role("link", name="Edit the rules").click()
    for name, value in rules.items():
        page.locator(f"#rule-{name}").fill(value)
    page.get_by_role("button", name="Save the rules").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Changed, in force now: " + ", ".join(rules))  # in the form's order


def score_shown(page: Any, message: str) -> None:
    """The submit page's answer shows the score; on a busy machine it may say the score
    is on My submissions instead, which reloads itself until it is."""
    from playwright.sync_api import expect

    result = page.get_by_role("status")
    expect(result).to_contain_text(re.compile(r"public score|My submissions"), timeout=60_000)
    if "public score" in result.inner_text():
        expect(result).to_contain_text(re.compile(r"public score \d+\.\d{6}"))
        return
    page.get_by_role("link", name="My submissions").first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=message))
    expect(row).to_contain_text("scored", timeout=120_000)
    expect(row).to_contain_text(re.compile(r"\d+\.\d{6}"))


def test_a_course_runs_in_the_browser(chromium, demo_dirs, tmp_path, capsys):  # noqa: F811
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    course = tmp_path / "course"
    dirs = {"nuclei": Path(shutil.copytree(demo_dirs["demo-nuclei"], course / "nuclei")),
            "em": course / "em"}  # made from the portal below
    code, out, err = run_cli(["organizer-token", "--course", course], capsys)
    assert code == 0, err
    organizer = re.search(r"course organizer token: (\S+)", out).group(1)
    people = roster_rows()
    roster = write_roster(tmp_path / "roster.csv", people)
    code, out, err = run_cli(["roster", "import", dirs["nuclei"], roster,
                              "--out", tmp_path / "tokens.csv"], capsys)
    assert code == 0, err
    assert "60 new account(s)" in out
    tokens = {r["name"]: r["token"] for r in sheet_rows(tmp_path / "tokens.csv")}
    assert len(tokens) == 60
    name = {k: people[k]["name"] for k in range(60)}

    def person() -> Any:
        return chromium.new_page(viewport=VIEWPORT)

    with served([course], ready="/api/competitions") as url:
        nuclei = url + "/c/nuclei"
        # --- the course organizer creates the second competition from the portal --------------
        boss = person()
        sign_in(boss, url, organizer)
        now = datetime.now(UTC)
        create_from_the_portal(boss, url, "em", "demo-em", TITLES["em"],
                               utc(now + timedelta(days=21)))
        boss.screenshot(path=str(shots / "course-created.png"))
        # ... and gives the roster to it: every student keeps their token, now valid in both.
        code, out, err = run_cli(["roster", "import", dirs["nuclei"], dirs["em"], roster,
                                  "--out", tmp_path / "tokens-em.csv"], capsys)
        assert code == 0, err
        assert "0 new account(s)" in out
        # The course organizer is the organizer of both competitions (the job's page signed
        # it in to the new one); it moves the new one's deadline on its rules page.
        boss.goto(url + "/")
        expect(boss.locator("#open li").filter(has_text="signed in as organizer")
               ).to_have_count(2)
        em_deadline = utc(now + timedelta(days=28))
        edit_rules(boss, url + "/c/em", deadline=em_deadline)
        expect(boss.locator("#rule-deadline")).to_have_value(em_deadline)
        # --- the organizer: deadline, merger deadline and team size on the rules page ---------
        deadline = utc(now + timedelta(days=14))
        edit_rules(boss, nuclei, deadline=deadline, team_size_limit="3",
                   merger_deadline=utc(now + timedelta(days=7)))
        expect(boss.locator("#rule-deadline")).to_have_value(deadline)
        expect(boss.get_by_label(re.compile("^Merger deadline"))).to_have_value(
            utc(now + timedelta(days=7)))
        expect(boss.get_by_label(re.compile("^Students per team"))).to_have_value("3")
        history = boss.locator("#rule-changes tbody tr")
        expect(history).to_have_count(3)
        for rule in ("deadline", "merger_deadline", "team_size_limit"):
            row = history.filter(has=boss.get_by_role("cell", name=rule, exact=True))
            expect(row).to_contain_text("organizer (page)")
        expect(history.filter(has=boss.get_by_role("cell", name="deadline", exact=True))
               ).to_contain_text(shown(deadline))
        boss.screenshot(path=str(shots / "course-rules.png"), full_page=True)

        # --- students of two teams submit to both competitions --------------------------------
        students = {}
        for k, team in ((0, "Team 01"), (3, "Team 02")):
            page = students[k] = person()
            sign_in(page, url, tokens[name[k]])  # once, for both competitions
            expect(page.locator("#open li").filter(has_text=f"signed in as team {team}")
                   ).to_have_count(2)
            for slug in ("nuclei", "em"):
                page.goto(url + "/")
                page.get_by_role("link", name=TITLES[slug]).click()
                page.get_by_role("link", name="Submit", exact=True).click()
                page.get_by_label("File").set_input_files(
                    str(dirs[slug] / "public" / SAMPLES[slug]))
                page.get_by_label("Message").fill(f"{slug} sample, by {name[k]}")
                page.get_by_role("button", name="Submit", exact=True).click()
                score_shown(page, f"{slug} sample, by {name[k]}")
                if k == 3:
                    page.screenshot(path=str(shots / f"course-scored-{slug}.png"))
        page = students[0]
        page.goto(nuclei + "/leaderboard")
        rows = page.get_by_role("table").get_by_role("row").filter(has=page.get_by_role("cell"))
        expect(rows).to_have_count(2)
        expect(page.get_by_role("table")).to_contain_text("Team 01")
        expect(page.get_by_role("table")).to_contain_text("Team 02")
        # Participants see the organizer's change below the rules, without who made it.
        page.goto(nuclei + "/")
        changes = page.locator("#rule-changes")
        expect(changes).to_contain_text(shown(deadline))
        expect(changes).not_to_contain_text("organizer")

        # --- the Team page: invite, join, leave -----------------------------------------------
        inviter = students[3]  # Team 02: two students
        inviter.goto(nuclei + "/")
        inviter.get_by_role("link", name="Team", exact=True).click()
        expect(inviter.locator("main")).to_contain_text(
            f"in team Team 02 (2 students: {', '.join(sorted([name[3], name[4]]))})")
        inviter.get_by_role("button", name="Make an invitation code").click()
        code_one = inviter.locator(".invitation-code").inner_text()
        inviter.screenshot(path=str(shots / "course-team-invitation.png"))

        joiner = person()  # a student without a team
        sign_in(joiner, url, tokens[name[50]])
        joiner.goto(nuclei + "/team")
        expect(joiner.locator("main")).to_contain_text(f"in team {name[50]} (1 student")
        joiner.get_by_label("Code").fill(code_one)
        joiner.get_by_role("button", name="Join", exact=True).click()
        expect(joiner.get_by_role("status")).to_contain_text("You joined Team 02")
        joiner.get_by_role("link", name="Your team").click()
        expect(joiner.locator("main")).to_contain_text("in team Team 02 (3 students")

        leaver = person()
        sign_in(leaver, url, tokens[name[4]])
        leaver.goto(nuclei + "/team")
        leaver.get_by_role("button", name="Leave team Team 02").click()
        expect(leaver.get_by_role("status")).to_contain_text(
            f"You left your team: you are now in team {name[4]}")

        # A second code; a student without a team loads the Team page with the join form...
        inviter.goto(nuclei + "/team")
        members = ", ".join(sorted([name[3], name[50]]))  # the page lists them by name
        expect(inviter.locator("main")).to_contain_text(
            f"in team Team 02 (2 students: {members})")
        inviter.get_by_role("button", name="Make an invitation code").click()
        code_two = inviter.locator(".invitation-code").inner_text()
        late = person()
        sign_in(late, url, tokens[name[51]])
        late.goto(nuclei + "/team")
        late.get_by_label("Code").fill(code_two)

        # ... the organizer moves the merger deadline into the past ...
        passed = utc(datetime.now(UTC) - timedelta(minutes=1))
        edit_rules(boss, nuclei, merger_deadline=passed)
        expect(boss.locator("#rule-changes tbody tr")).to_have_count(4)

        # ... and the join is refused, naming the merger deadline; the page says teams are
        # frozen and offers no more forms.
        late.get_by_role("button", name="Join", exact=True).click()
        refusal = late.get_by_role("alert")
        expect(refusal).to_contain_text(
            f"teams are frozen: the merger deadline was {passed}")
        expect(late.locator("main")).to_contain_text("Teams are frozen")
        expect(late.get_by_role("button", name="Join", exact=True)).to_have_count(0)
        late.screenshot(path=str(shots / "course-team-frozen.png"))

        # --- the grades, through the organizer page's link ------------------------------------
        boss.goto(nuclei + "/organizer")
        with boss.expect_download() as download:
            boss.get_by_role("link", name="Grades (CSV)").click()
        grades = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert sorted(r["name"] for r in grades) == sorted(name.values())
        assert sorted(r["student_id"] for r in grades) == [f"s{k:03d}" for k in range(1, 61)]
        by_name = {r["name"]: r for r in grades}
        assert by_name[name[50]]["team"] == "Team 02"
        assert by_name[name[4]]["team"] == name[4]
        assert by_name[name[51]]["team"] == name[51]
        ranked = {r["team"] for r in grades if r["rank"]}
        assert ranked == {"Team 01", "Team 02"}  # the two teams that submitted
        boss.screenshot(path=str(shots / "course-organizer.png"))
