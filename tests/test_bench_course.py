"""A smoke run of benchmarks/bench_course.py: its JSON's shape, and every submission scored.

The timings themselves are the benchmark's to print, not a test's to assert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PAGES = {"/", "/api/competitions", "/c/SLUG/", "/c/SLUG/leaderboard", "/c/SLUG/submissions"}
FIGURES = {"median_ms", "p95_ms", "n"}


def test_bench_course_smoke():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_course.py"),
                          "--competitions", "2", "--accounts", "4", "--submissions", "6",
                          "--repeat", "2", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    setup = result["setup"]
    assert setup["competitions"] == {"demo-nuclei": "demo-nuclei", "demo-em": "demo-em"}
    assert (setup["accounts"], setup["submissions"]) == (4, 6)
    for label in ("idle", "loaded"):
        assert set(result[label]["pages"]) == PAGES
        for figures in [*result[label]["pages"].values(), result[label]["all_pages"],
                        result[label]["upload_to_202"]]:
            assert set(figures) == FIGURES and figures["n"] > 0
    assert result["loaded"]["upload_to_202"]["n"] == 6
    assert result["loaded"]["pages"]["/c/SLUG/"]["n"] >= 2 * 2  # 2 rounds, 2 competitions
    assert set(result["ratios"]) == PAGES | {"all_pages", "upload_to_202"}
    assert set(result["met"]) == {"pages", "upload"}
    # every upload answered 202 and every page 200; every submission ended scored
    assert result["errors"] == {}
    total = 6 + setup["reference_uploads"]
    assert result["statuses"] == {"scored": total} and result["all_scored"] is True
