"""What the browser tests share: Debian's Chromium driven by Playwright (a skip naming what is
missing, or a failure under $COMPETITION_REQUIRE_BROWSER), `competition serve` in its own
process on a free loopback port, the course sign-in form, and the folder screenshots go to
($COMPETITION_SCREENSHOT_DIR, where the README's come from, else the test's own)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("COMPETITION_CHROMIUM", "/usr/bin/chromium")
# Chromium's background services try to reach the internet, which this machine cannot.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic"]
VIEWPORT = {"width": 1180, "height": 720}
EXPECT_MS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(folders: list[Path], ready: str = "/api/leaderboard") -> Iterator[str]:
    """`competition serve FOLDER...` in its own process; its URL once `ready` answers 200."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "competition", "serve",
                             *map(str, folders), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Two minutes: a course's start (several stores, the scoring workers) on a busy machine.
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            try:
                if httpx.get(url + ready, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            proc.kill()
            assert proc.stdout is not None
            raise AssertionError(proc.stdout.read().decode())
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A Chromium browser: each `new_page(viewport=VIEWPORT)` is a person of their own."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)"
        if os.environ.get("COMPETITION_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    # A page's answer may take a while where the tests share a few busy cores (5 s by default).
    expect.set_options(timeout=EXPECT_MS)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield browser
            browser.close()
    finally:
        expect.set_options(timeout=5_000)


@pytest.fixture
def browser_page(chromium: Any) -> Any:
    return chromium.new_page(viewport=VIEWPORT)


def screenshot_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("COMPETITION_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def sign_in(page: Any, url: str, token: str) -> None:
    """Through the sign-in form at `url` (a competition's /login or the course's): its
    CSRF token and the browser's Origin go with it."""
    from playwright.sync_api import expect

    page.goto(url + "/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).not_to_have_url(url + "/login")
