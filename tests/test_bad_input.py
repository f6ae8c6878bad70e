"""Every malformed submission: exit code 2, a message naming file, place and rule; no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from competition.formats import em_tiff
from competition.interfaces import cli


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """The real entry point, in-process: exit code, stdout, stderr."""
    old = sys.argv
    sys.argv = ["competition", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_rejected(capsys, comp: Path, path: Path, name: str, fragments: list[str],
                    commands=("score",)) -> None:
    """Exit code 2, a message naming the file and each fragment, and no traceback."""
    for command in commands:
        code, out, err = run_cli([command, comp, path], capsys)
        assert code == 2, (name, out, err)
        assert str(path) in err and "Traceback" not in err + out, name
        for fragment in fragments:
            assert fragment in err, (name, fragment, err)
        # With --json: the same exit code, and one JSON object saying why on stdout.
        code, out, err = run_cli([command, comp, path, "--json"], capsys)
        shown = json.loads(out)
        assert code == 2 and shown == {"score": {"status": "invalid"},
                                       "validate": {"valid": False}}[command] | {
                                           "error": shown["error"]}, (name, out, err)
        assert str(path) in shown["error"] and all(f in shown["error"] for f in fragments)


def nuclei_valid(comp: Path) -> str:
    """A valid submission: the solution's own rows."""
    lines = (comp / "private" / "solution.csv").read_text().splitlines()[1:]
    return "ImageId,EncodedPixels\n" + "".join(",".join(ln.split(",")[:2]) + "\n" for ln in lines)


def nuclei_cases(comp: Path) -> list[tuple[str, bytes, list[str]]]:
    valid = nuclei_valid(comp)
    lines = valid.splitlines()
    first_id = lines[1].split(",")[0]
    body = lines[1:]
    return [
        ("wrong header", ("Id,Pixels\n" + "\n".join(body)).encode(), ["line 1", "header"]),
        ("unknown id", (valid + "deadbeef,1 1\n").encode(), [f"line {len(lines) + 1}",
                                                            "not a test image"]),
        ("missing ids", (lines[0] + "\n" + lines[1] + "\n").encode(), ["missing"]),
        ("non-integer", (valid + f"{first_id},1 x\n").encode(), ["non-integer", first_id]),
        ("odd tokens", (valid + f"{first_id},1 2 3\n").encode(), ["odd number"]),
        ("start zero", (valid + f"{first_id},0 2\n").encode(), ["< 1"]),
        ("unsorted", (valid + f"{first_id},9 1 3 1\n").encode(), ["strictly increasing"]),
        ("beyond image", (valid + f"{first_id},999999999 1\n").encode(), ["beyond"]),
        ("duplicate", (valid + lines[1] + "\n").encode(), ["duplicate of line 2",
                                                          f"line {len(lines) + 1}"]),
        ("overlap", (valid + f"{first_id},{_shifted(lines[1])}\n").encode(), ["overlaps",
                                                                            first_id]),
        ("non-UTF-8", valid.encode() + b"\xff\xfe\n", ["not UTF-8"]),
        ("empty", b"", ["empty"]),
        ("only whitespace", b" \n\n", ["no text"]),
        ("truncated", valid.encode()[: len(valid) // 2], []),
        ("three fields", (valid + f"{first_id},1 1,extra\n").encode(), ["3 fields"]),
        ("huge number", (valid + f"{first_id},1 {'9' * 30}\n").encode(), ["too large"]),
    ]


NUCLEI_CASES = ("wrong header", "unknown id", "missing ids", "non-integer", "odd tokens",
                "start zero", "unsorted", "beyond image", "duplicate", "overlap", "non-UTF-8",
                "empty", "only whitespace", "truncated", "three fields", "huge number")


def _shifted(row: str) -> str:
    """A mask overlapping the row's mask: its first run moved by one pixel."""
    tokens = row.split(",")[1].split()
    return f"{int(tokens[0]) + 1} 1"


def case(cases: list[tuple[str, bytes, list[str]]], name: str) -> tuple[bytes, list[str]]:
    """The data and message fragments of the case called `name` (exactly one)."""
    found = [(data, fragments) for n, data, fragments in cases if n == name]
    assert len(found) == 1, (name, [n for n, _, _ in cases])
    return found[0]


def test_case_lists_name_every_case(demo_dirs):
    """The parametrized names are exactly the built cases: none added or removed unseen."""
    for names, cases in ((NUCLEI_CASES, nuclei_cases(demo_dirs["demo-nuclei"])),
                         (EM_CASES, em_cases(demo_dirs["demo-em"])),
                         (LANDMARK_CASES, landmark_cases(demo_dirs["demo-landmarks"]))):
        assert [name for name, _, _ in cases] == list(names)
        assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", NUCLEI_CASES)
def test_bad_nuclei_submissions(demo_dirs, tmp_path, capsys, name):
    comp = demo_dirs["demo-nuclei"]
    data, fragments = case(nuclei_cases(comp), name)
    path = tmp_path / "sub.csv"
    path.write_bytes(data)
    assert_rejected(capsys, comp, path, name, fragments, ("validate", "score"))


def test_bom_and_crlf_are_accepted(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    path.write_bytes(b"\xef\xbb\xbf" + nuclei_valid(comp).replace("\n", "\r\n").encode())
    code, out, err = run_cli(["score", comp, path, "--json"], capsys)
    assert code == 0, err
    assert '"score": 1.0' in out


def em_cases(comp: Path):
    shape = em_tiff.read_stack((comp / "public" / "test-volume.tif").read_bytes()).shape
    good = np.full(shape, 0.5, np.float32)
    nan = good.copy()
    nan[2, 3, 4] = np.nan
    high = good.copy()
    high[1, 0, 0] = 1.5
    valid = em_tiff.write_stack(good)
    return [
        ("not a tiff", b"ImageId,EncodedPixels\n", ["not a TIFF"]),
        ("truncated", valid[: len(valid) // 3], ["truncated"]),
        ("slice count", em_tiff.write_stack(good[:-1]), ["does not match", str(shape)]),
        ("shape", em_tiff.write_stack(good[:, :-1]), ["does not match"]),
        ("NaN", em_tiff.write_stack(nan), ["slice 2", "NaN", "row 3, column 4"]),
        ("out of range", em_tiff.write_stack(high), ["slice 1", "outside [0, 1]"]),
        ("16-bit", em_tiff.write_stack(np.full(shape, 1000, np.uint16)), ["0..255"]),
        # The README promises float probabilities or 8-bit maps: a 16-bit map is refused even
        # where its values would fit 8 bits (its scale is ambiguous).
        ("int16 in range", em_tiff.write_stack(np.full(shape, 100, np.int16)),
         ["pixel type int16 is not accepted", "uint8"]),
        ("empty", b"", ["empty"]),
    ]


EM_CASES = ("not a tiff", "truncated", "slice count", "shape", "NaN", "out of range", "16-bit",
            "int16 in range", "empty")


@pytest.mark.parametrize("name", EM_CASES)
def test_bad_em_submissions(demo_dirs, tmp_path, capsys, name):
    comp = demo_dirs["demo-em"]
    data, fragments = case(em_cases(comp), name)
    path = tmp_path / "sub.tif"
    path.write_bytes(data)
    assert_rejected(capsys, comp, path, name, fragments)


def test_eight_bit_and_binary_em_submissions_are_accepted(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-em"]
    labels = em_tiff.read_stack((comp / "private" / "solution.tif").read_bytes())
    for array in (labels, labels > 0):
        path = tmp_path / "sub.tif"
        path.write_bytes(em_tiff.write_stack(array))
        code, out, err = run_cli(["score", comp, path, "--json"], capsys)
        assert code == 0, err
        assert '"score": 1.0' in out


def landmark_cases(comp: Path):
    rows = (comp / "private" / "solution.csv").read_text().splitlines()
    header = "specimen,landmark,x,y,z"
    body = [",".join(r.split(",")[:5]) for r in rows[1:]]
    valid = header + "\n" + "\n".join(body) + "\n"
    specimen = body[0].split(",")[0]
    return [
        ("wrong header", ("id,lm,x,y,z\n" + "\n".join(body)).encode(), ["line 1", "header"]),
        ("unknown specimen", (valid + "nobody,1,0,0,0\n").encode(), ["not a test specimen"]),
        ("unknown landmark", (valid + f"{specimen},999,0,0,0\n").encode(), ["unknown landmark"]),
        ("missing landmark", (header + "\n" + "\n".join(body[1:]) + "\n").encode(),
         ["missing", f"specimen {specimen}"]),
        ("duplicate", (valid + body[0] + "\n").encode(), ["duplicate of line 2"]),
        ("NaN", (header + "\n" + f"{specimen},1,nan,0,0\n" + "\n".join(body[1:])).encode(),
         ["finite", "line 2"]),
        ("not a number", (header + "\n" + f"{specimen},1,abc,0,0\n").encode(), ["numbers"]),
    ]


LANDMARK_CASES = ("wrong header", "unknown specimen", "unknown landmark", "missing landmark",
                  "duplicate", "NaN", "not a number")


@pytest.mark.parametrize("name", LANDMARK_CASES)
def test_bad_landmark_submissions(demo_dirs, tmp_path, capsys, name):
    comp = demo_dirs["demo-landmarks"]
    data, fragments = case(landmark_cases(comp), name)
    path = tmp_path / "sub.csv"
    path.write_bytes(data)
    assert_rejected(capsys, comp, path, name, fragments)


def test_size_limit_is_configurable(demo_dirs, tmp_path, capsys):
    comp = tmp_path / "comp"
    import shutil

    shutil.copytree(demo_dirs["demo-nuclei"], comp)
    config = yaml.safe_load((comp / "competition.yaml").read_text())
    config["rules"]["max_submission_mb"] = 0.001
    (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(comp))
    code, _, err = run_cli(["validate", comp, path], capsys)
    assert code == 2 and "over the size limit" in err


def test_missing_file_and_directory(demo_dirs, tmp_path, capsys):
    code, _, err = run_cli(["score", demo_dirs["demo-nuclei"], tmp_path / "nope.csv"], capsys)
    assert code == 2 and "file not found" in err
    code, _, err = run_cli(["score", tmp_path, tmp_path / "nope.csv"], capsys)
    assert code == 2 and "not a prepared competition" in err


def test_errors_never_show_hidden_labels(demo_dirs, tmp_path, capsys):
    """Validation only knows ids and shapes: no solution RLE ever appears in a message."""
    comp = demo_dirs["demo-nuclei"]
    solution_runs = {ln.split(",")[1] for ln in
                     (comp / "private" / "solution.csv").read_text().splitlines()[1:]}
    for name, data, _ in nuclei_cases(comp):
        path = tmp_path / "sub.csv"
        path.write_bytes(data)
        _, out, err = run_cli(["validate", comp, path], capsys)
        assert not any(run and run in err for run in solution_runs if len(run) > 6), name


def test_the_installed_command_exits_2_without_traceback(demo_dirs, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("nonsense\n")
    proc = subprocess.run([sys.executable, "-m", "competition", "score",
                           str(demo_dirs["demo-nuclei"]), str(path), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "header" in proc.stderr
    shown = json.loads(proc.stdout)  # one object, as `submit --json` prints
    assert shown["status"] == "invalid" and "header" in shown["error"]


def test_greedy_ensembles_need_out_of_fold_maps(demo_dirs, tmp_path, capsys):
    """Greedy never chooses on the hidden split: without `competition cv` folders it is
    refused, and --cv with a method that chooses nothing too (refused before MLflow is read)."""
    comp = demo_dirs["demo-nuclei"]
    code, out, err = run_cli(["ensemble", comp, "1", "2", "--method", "greedy"], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "run `competition cv DIR ENTRY` for each member" in err and "--cv" in err
    code, _, err = run_cli(["ensemble", comp, "1", "2", "--method", "greedy", "--cv",
                            tmp_path], capsys)
    assert code == 2 and "1 --cv folders for 2 members" in err
    code, _, err = run_cli(["ensemble", comp, "1", "2", "--cv", tmp_path, "--cv", tmp_path],
                           capsys)
    assert code == 2 and "--cv is for --method greedy" in err
