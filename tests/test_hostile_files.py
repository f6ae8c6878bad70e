"""Hostile submission files (issue 16): each is refused as `invalid` through the real submit
path, quickly and within bounded memory, and a scoring limit reached names the limit.

The four files of the issue are rebuilt here at the demo competitions' sizes: a nuclei CSV
whose rows overlap on one image (614 KB, and 1.3 MB), a deflate TIFF bomb (declared pages of
gigabytes; and pages of the right shape whose strips inflate to gigabytes) and a TIFF of
100,000 one-pixel pages. Before the bounded readers, the CSVs needed 5 and 11 GB to score (the
rows are painted into masks) and the bombs 2.6 GB and more; the 100,000 pages took over 600 s.
Each now runs in a subprocess, scored by a forked child as `Board.submissions.submit` does,
while this process samples the resident memory of the whole process tree.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
import yaml

from competition import rlimits
from competition.board.board import Board
from competition.board.context import RuleError
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer
from competition.board.status import Status
from competition.errors import MAX_ERROR_CHARS, SubmissionError, clipped
from competition.formats import em_tiff, landmarks_csv, nuclei_csv, rle
from competition.formats.files import Limits, SubmissionFile, count_entries, directory_span
from competition.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
GB = 10**9
MAX_SECONDS = 30  # the bound for each hostile file
HANG_SECONDS = 120  # what only a scorer that the limits failed to stop would take
MAX_TREE_BYTES = 1 * GB


# --- building the hostile files ----------------------------------------------------------

def overlapping_csv(comp: Path, size: int) -> bytes:
    """A nuclei submission of about `size` bytes: every test image once (empty), then rows
    that each cover nearly all of the largest test image, all different (no row is a
    duplicate of another), so they overlap each other on that image."""
    solution = nuclei_csv.read_solution((comp / "private" / "solution.csv").read_bytes())
    shapes = {image_id: image.shape for image_id, image in solution.items()}
    target = max(shapes, key=lambda i: shapes[i][0] * shapes[i][1])
    area = shapes[target][0] * shapes[target][1]
    lines = ["ImageId,EncodedPixels"] + [f"{image_id}," for image_id in shapes]
    total = sum(len(line) + 1 for line in lines)
    k = 1
    while total < size:
        start = 1 + k % 1000  # a distinct (start, length) pair for each row
        line = f"{target},{start} {area - start + 1 - k // 1000}"
        lines.append(line)
        total += len(line) + 1
        k += 1
    return ("\n".join(lines) + "\n").encode()


def deflate_zeros(n_blocks: int, block: int = 64 * MIB) -> bytes:
    """A zlib stream of `n_blocks * block` zero bytes, built without compressing them all:
    one fully flushed raw deflate block (it does not depend on what came before) repeated."""
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = raw.compress(bytes(block)) + raw.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    n = n_blocks * block
    adler = ((n % 65521) << 16) | 1  # Adler-32 of n zero bytes
    return b"\x78\xda" + body * n_blocks + end + struct.pack(">I", adler)


def tiff_pages(pages: int, height: int, width: int, strip: bytes, *, bits: int = 32,
               sample_format: int = 3, compression: int = 8,
               description: bytes | None = None) -> bytes:
    """A classic little-endian TIFF of `pages` pages that all point at one strip (and at one
    ImageDescription, where given)."""
    data_at = 8
    text_at = data_at + len(strip) + len(strip) % 2
    text = b"" if description is None else description + b"\x00"
    first_ifd = text_at + len(text) + len(text) % 2
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits),
               (259, 3, 1, compression), (262, 3, 1, 1)]
    if text:
        entries.append((270, 2, len(text), text_at))
    entries += [(273, 4, 1, data_at), (277, 3, 1, 1), (278, 4, 1, height),
                (279, 4, 1, len(strip)), (339, 3, 1, sample_format)]
    body = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    size = len(body) + 4
    ifds = b"".join(body + struct.pack("<I", first_ifd + (i + 1) * size if i + 1 < pages else 0)
                    for i in range(pages))
    return (b"II*\x00" + struct.pack("<I", first_ifd) + strip + b"\x00" * (len(strip) % 2)
            + text + b"\x00" * (len(text) % 2) + ifds)


def em_shape(comp: Path) -> tuple[int, int, int]:
    n, h, w = em_tiff.read_stack((comp / "public" / "test-volume.tif").read_bytes()).shape
    return n, h, w


def declared_bomb(comp: Path) -> bytes:
    """As many pages as the test volume, each declaring 14336x8192 float32 (470 MB) and
    pointing at one deflate strip of as many zeros: 2.8 GB decoded from a 0.5 MB file."""
    n, _, _ = em_shape(comp)
    return tiff_pages(n, 14336, 8192, deflate_zeros(7))


def lying_bomb(comp: Path) -> bytes:
    """Pages of exactly the test volume's shape whose one shared strip inflates to 470 MB,
    not the 147 KB the tags declare: 2.8 GB decoded, unless inflating is bounded."""
    n, h, w = em_shape(comp)
    return tiff_pages(n, h, w, deflate_zeros(7))


def many_pages(comp: Path, pages: int = 100_000) -> bytes:
    """100,000 pages of one 8-bit pixel (about 13 MB), each described as a series of its own
    (as tifffile writes pages one by one): reading them as a stack was quadratic in pages."""
    return tiff_pages(pages, 1, 1, b"\x80", bits=8, sample_format=1, compression=1,
                      description=b'{"shape": [1, 1]}')


# --- submitting in a subprocess, measuring the process tree ----------------------------------

def competition_copy(demo_dirs, kind: str, tmp_path: Path, **rules) -> Path:
    comp = tmp_path / kind
    shutil.copytree(demo_dirs[kind], comp)
    if rules:
        config = yaml.safe_load((comp / "competition.yaml").read_text())
        config["rules"].update(rules)
        (comp / "competition.yaml").write_text(yaml.safe_dump(config))
    return comp


def submit_and_report(root: str, path: str) -> None:
    """In the subprocess: submit `path` to the competition at `root` and print the outcome with
    the peak resident memory of this process and of its children (the scorer, its workers)."""
    board = Board(PreparedCompetition.open(root))
    result = board.submissions.submit(Path(path), "hostile")
    print(json.dumps({
        "status": str(result.status), "error": result.error,
        "self_kb": peak_rss_kb(),
        "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))


def peak_rss_kb() -> int:
    """This process's peak resident memory since it started its program. (Not ru_maxrss:
    Linux keeps that across exec, so a small subprocess forked from a large test process
    would report the test process's size.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def submit_measured(comp: Path, path: Path) -> dict:
    """The outcome of submitting `path`, with `seconds` and `tree_bytes`, the highest sum of
    the resident memory of the submitting process and all its descendants (sampled every
    20 ms, and at least the largest single process's own peak)."""
    code = ("import sys; from tests.test_hostile_files import submit_and_report; "
            "submit_and_report(sys.argv[1], sys.argv[2])")
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, str(comp), str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    try:
        top = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.monotonic() - start > MAX_SECONDS + 30:
                proc.kill()
                break
            total = 0
            try:
                for p in [top, *top.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # it ended meanwhile
                        total += p.memory_info().rss
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.02)
    finally:
        out, err = proc.communicate()
    seconds = time.monotonic() - start
    assert proc.returncode == 0, (out, err)
    report = json.loads(out.strip().splitlines()[-1])
    report["seconds"] = seconds
    report["tree_bytes"] = max(peak, report["self_kb"] * 1024, report["children_kb"] * 1024)
    return report


def assert_refused(report: dict, *fragments: str) -> None:
    assert report["status"] == Status.INVALID, report
    for fragment in fragments:
        assert fragment in report["error"], (fragment, report)
    assert report["seconds"] < MAX_SECONDS, report
    assert report["tree_bytes"] < MAX_TREE_BYTES, report


@pytest.mark.parametrize("size", [614_000, 1_300_000])
def test_overlapping_nuclei_rows_are_refused_before_painting(demo_dirs, tmp_path, size):
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path)
    path = tmp_path / "overlap.csv"
    path.write_bytes(overlapping_csv(comp, size))
    assert abs(path.stat().st_size - size) < 1000
    report = submit_measured(comp, path)
    n_rows = len(path.read_bytes().splitlines()) - 1
    # The old reader painted every row: gigabytes for this file.
    assert n_rows > 5000
    assert_refused(report, "masks overlap", "more pixels than its", "ImageId", "line ")


@pytest.mark.parametrize("build", [declared_bomb, lying_bomb, many_pages],
                         ids=["declared-bomb", "lying-bomb", "100000-pages"])
def test_hostile_tiffs_are_refused_before_decoding(demo_dirs, tmp_path, build):
    comp = competition_copy(demo_dirs, "demo-em", tmp_path)
    path = tmp_path / "hostile.tif"
    path.write_bytes(build(comp))
    report = submit_measured(comp, path)
    shape = str(em_shape(comp))
    fragments = {declared_bomb: ["slice 0", "(14336, 8192)", "does not match", shape],
                 lying_bomb: ["slice 0", "inflates to more than", "bytes the page's tags declare"],
                 many_pages: ["more than 6 pages", "does not match", shape]}[build]
    assert_refused(report, *fragments)


def test_the_bombs_are_real(demo_dirs):
    """What the readers refuse is what the tests claim: the strips inflate to 470 MB each
    (checked with a bounded inflater, not by allocating it), and the 100,000 pages are
    there."""
    comp = demo_dirs["demo-em"]
    stream = deflate_zeros(7)
    inflater = zlib.decompressobj()
    total, chunk = 0, inflater.decompress(stream, 64 * MIB)
    assert chunk == bytes(len(chunk))
    while chunk:
        total += len(chunk)
        chunk = inflater.decompress(inflater.unconsumed_tail, 64 * MIB)
    assert total == 7 * 64 * MIB and inflater.eof
    assert len(stream) < 600_000
    data = many_pages(comp)
    assert em_tiff.count_pages(data, 200_000) == 100_000
    assert em_tiff.count_pages(data, 7) == 7  # the reader stops counting here


# --- the fast checks, in process -------------------------------------------------------------

def test_a_run_start_of_5000_digits_is_invalid_with_its_line(demo_dirs):
    comp = demo_dirs["demo-nuclei"]
    solution = nuclei_csv.read_solution((comp / "private" / "solution.csv").read_bytes())
    shapes = {image_id: image.shape for image_id, image in solution.items()}
    first = next(iter(shapes))
    rows = "".join(f"{image_id},\n" for image_id in shapes)
    for bad in (f"{'9' * 5000} 1", f"1 {'9' * 5000}", f"1 1 {'1' * 4301} 2", "1 " + "7" * 16):
        data = f"ImageId,EncodedPixels\n{rows}{first},{bad}\n".encode()
        with pytest.raises(nuclei_csv.SubmissionError) as e:
            nuclei_csv.read_submission(data, shapes)
        assert f"line {len(shapes) + 2} (ImageId {first}" in str(e.value)
        assert "too large for any image" in str(e.value)


def test_overlaps_are_found_from_runs_alone():
    """`first_overlap` names the first object (in file order) that overlaps an earlier one,
    as painting the objects one by one finds it, on random objects."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(2, 12, 2)
        labels = rng.integers(0, 4, (h, w))
        runs = [rle.parse(s, h * w) for s in rle.encode_labels(labels)]
        extra = rng.integers(0, 2)
        if extra and runs:  # a copy of a random object's first run, moved a little
            start, length = runs[rng.integers(len(runs))][0]
            start = int(min(max(start + rng.integers(-2, 3), 0), h * w - 1))
            runs.insert(int(rng.integers(len(runs) + 1)),
                        np.array([[start, min(int(length), h * w - start)]]))
        counts = np.array([len(r) for r in runs], dtype=np.int64)
        flat = np.concatenate(runs) if runs else np.zeros((0, 2), np.int64)
        hits = np.zeros(h * w, int)
        expected = -1
        for k, r in enumerate(runs):
            pixels = np.concatenate([np.arange(s, s + n) for s, n in r])
            if expected < 0 and hits[pixels].any():
                expected = k
            hits[pixels] += 1
        assert rle.first_overlap(flat, counts) == expected


def test_em_reader_refuses_odd_layouts(tmp_path):
    """A compression that cannot be inflated within bounds and directories that form a loop
    are refused before decoding; deflate, LZMA and plain stacks of the right shape read."""
    good = np.random.default_rng(0).random((3, 16, 24)).astype(np.float32)
    for compression in ("zlib", "lzma", None):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, good, photometric="minisblack", compression=compression,
                         rowsperstrip=5)
        assert np.array_equal(em_tiff.read_probabilities(buffer.getvalue(), good.shape), good)
    packbits = tiff_pages(3, 16, 24, b"\x00" * 10, bits=8, sample_format=1, compression=32773)
    with pytest.raises(em_tiff.SubmissionError, match="compression 32773 is not accepted"):
        em_tiff.read_probabilities(packbits, (3, 16, 24))
    loop = bytearray(tiff_pages(2, 16, 24, b"\x00"))
    loop[-4:] = struct.pack("<I", struct.unpack("<I", loop[4:8])[0])  # page 2 links to page 1
    with pytest.raises(em_tiff.SubmissionError, match="loop"):
        em_tiff.read_probabilities(bytes(loop), (3, 16, 24))


def test_valid_masks_still_paint_every_pixel(demo_dirs, tmp_path):
    """Painting now skips the per-pixel overlap count: a valid file's label images still hold
    every pixel of every run, and it scores."""
    comp = PreparedCompetition.open(demo_dirs["demo-nuclei"])
    path = tmp_path / "naive.csv"
    path.write_bytes(comp.task.naive_submission(comp.public_dir))
    task = get_task("nuclei")
    result = task.score(SubmissionFile(path), comp.load_solution())
    solution = comp.load_solution()
    parsed = nuclei_csv.read_submission(path.read_bytes(), task.shapes(solution))
    for image_id, image in parsed.items():
        labels, n = image.labels_flat(image_id)
        assert n == image.n_objects and np.bincount(labels)[1:].sum() == image.runs[:, 1].sum()
    assert 0 < result.score < 1


# --- scoring limits ------------------------------------------------------------------------

def naive_file(comp: Path, tmp_path: Path) -> Path:
    prepared = PreparedCompetition.open(comp)
    path = tmp_path / f"naive{prepared.task.submission_suffix}"
    path.write_bytes(prepared.task.naive_submission(prepared.public_dir))
    return path


def large_nuclei_file(comp: Path, tmp_path: Path) -> Path:
    """A valid 40 MB CSV of empty rows: a few hundred MB of Python objects to read."""
    solution = nuclei_csv.read_solution((comp / "private" / "solution.csv").read_bytes())
    rows = "".join(f"{image_id},\n" for image_id in solution)
    path = tmp_path / "large.csv"
    path.write_text("ImageId,EncodedPixels\n" + rows * (40 * MIB // len(rows)))
    return path


def test_a_small_memory_limit_makes_a_large_file_invalid_naming_it(demo_dirs, tmp_path):
    """The real scorer, no test double, over a 64 MB limit, forked (as the CLI scores) from a
    fresh process: the limit is on what the child adds to the address space it was forked
    with, so a parent with much free heap would lend it that too."""
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path, scoring_memory_mb=64)
    report = submit_measured(comp, large_nuclei_file(comp, tmp_path))
    assert report["status"] == Status.INVALID, report
    assert "the scorer needed more than 64 MB of memory" in report["error"]
    assert report["tree_bytes"] < MAX_TREE_BYTES, report
    board = Board(PreparedCompetition.open(comp))
    (row,) = board.submissions.of_team("hostile")
    with pytest.raises(RuleError, match="only failed submissions can be retried"):
        board.submissions.retry(row.id, "hostile")


def test_a_small_memory_limit_under_a_fork_server(demo_dirs, tmp_path):
    """The same under the portal's and the scoring jobs' start method."""
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path, scoring_memory_mb=64)
    board = Board(PreparedCompetition.open(comp), scorer=ChildScorer("forkserver"))
    result = board.submissions.submit(large_nuclei_file(comp, tmp_path), "team")
    assert result.status == Status.INVALID, result
    assert "the scorer needed more than 64 MB of memory" in (result.error or "")


def test_an_unbounded_scorer_sets_no_limits(demo_dirs, tmp_path):
    """`ChildScorer(bounded=False)` (the benchmark's before) scores the same file."""
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path, scoring_memory_mb=64)
    board = Board(PreparedCompetition.open(comp), scorer=ChildScorer(bounded=False))
    result = board.submissions.submit(large_nuclei_file(comp, tmp_path), "team")
    assert result.status == Status.SCORED, result


def hungry_score_file(root: str, path: str, file_name: str, details: bool) -> dict:
    """A scorer that wants 8 GB."""
    block = np.ones(8 * GB // 8)
    return {"status": Status.SCORED, "score": float(block[0])}


def busy_score_file(root: str, path: str, file_name: str, details: bool) -> dict:
    """A scorer that never stops computing."""
    x = 0
    while True:
        x += 1


def test_memory_limit_while_scoring_is_invalid(demo_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr("competition.board.scorer_process.score_file", hungry_score_file)
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path, scoring_memory_mb=200)
    board = Board(PreparedCompetition.open(comp))
    result = board.submissions.submit(naive_file(comp, tmp_path), "team")
    assert result.status == Status.INVALID, result
    assert "the scorer needed more than 200 MB of memory" in (result.error or "")


def test_cpu_limit_kills_the_scorer_and_is_invalid(demo_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr("competition.board.scorer_process.score_file", busy_score_file)
    comp = competition_copy(demo_dirs, "demo-nuclei", tmp_path, scoring_cpu_seconds=1)
    board = Board(PreparedCompetition.open(comp))
    start = time.monotonic()
    result = board.submissions.submit(naive_file(comp, tmp_path), "team")
    assert time.monotonic() - start < HANG_SECONDS  # 1 s of CPU; a busy machine is slower
    assert result.status == Status.INVALID, result
    assert "the scorer needed more than 1 s of CPU time" in (result.error or "")
    with pytest.raises(RuleError, match="only failed submissions can be retried"):
        board.submissions.retry(result.id, "team")


def burning_slice(label, proposal, thresholds):
    while True:
        pass


def hungry_slice(label, proposal, thresholds):
    return np.ones(8 * GB // 8)


@pytest.mark.parametrize("slice_fn, fragment", [
    (burning_slice, "more than 2 s of CPU time"),
    (hungry_slice, "more than 300 MB of memory"),
], ids=["cpu", "memory"])
def test_limits_bound_the_em_scorers_worker_pool(demo_dirs, tmp_path, monkeypatch, slice_fn,
                                                 fragment):
    """The EM scorer spreads slices over worker processes: each gets a share of the limits,
    and a worker's breach comes back as the limit's `invalid`, not a broken pool."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr("competition.metrics.em.score_slice", slice_fn)
    comp = competition_copy(demo_dirs, "demo-em", tmp_path, scoring_cpu_seconds=2,
                            scoring_memory_mb=300)
    board = Board(PreparedCompetition.open(comp))
    start = time.monotonic()
    result = board.submissions.submit(naive_file(comp, tmp_path), "team")
    assert time.monotonic() - start < HANG_SECONDS
    assert result.status == Status.INVALID, result
    assert fragment in (result.error or ""), result.error


def test_workers_share_what_the_scorer_has_left():
    """Inside a bounded process, a pool of n workers gets 1/(n+1) of the memory headroom each
    (the pool's parent keeps one share meanwhile, and its whole remainder afterwards) and 1/n
    of the CPU time left: the tree never holds more than one budget."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: bound it, then report the shares
        try:
            rlimits.apply(rlimits.ScoringLimits(memory_mb=600, cpu_seconds=60))
            before = resource.getrlimit(resource.RLIMIT_AS)[0] - rlimits.address_space()
            with rlimits.shared(2) as kwargs:
                _, memory_share, cpu_share = kwargs["initargs"]
                during = resource.getrlimit(resource.RLIMIT_AS)[0] - rlimits.address_space()
            after = resource.getrlimit(resource.RLIMIT_AS)[0] - rlimits.address_space()
            os.write(write, json.dumps([memory_share, cpu_share, before, during, after]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        memory_share, cpu_share, before, during, after = json.loads(f.read())
    os.waitpid(pid, 0)
    assert 190 * MIB < memory_share <= 200 * MIB
    assert abs(during - memory_share) < 8 * MIB and abs(after - before) < 8 * MIB
    assert 590 * MIB < before <= 600 * MIB
    assert 29 <= cpu_share <= 30
    with rlimits.shared(2) as kwargs:
        assert kwargs == {}  # this process is not bounded


def test_a_task_may_raise_the_limits(demo_dirs, monkeypatch):
    from competition.board.scorer_process import scoring_limits

    comp = PreparedCompetition.open(demo_dirs["demo-em"])
    assert scoring_limits(comp) == rlimits.ScoringLimits(2048, 120)
    monkeypatch.setattr(type(comp.task), "scoring_memory_mb", 8192)
    monkeypatch.setattr(type(comp.task), "scoring_cpu_seconds", 60)  # lower: the rule's wins
    assert scoring_limits(comp) == rlimits.ScoringLimits(8192, 120)


def test_a_landmark_file_far_longer_than_the_test_set_is_refused_before_splitting():
    expected = {"s1": ["1", "2"], "s2": ["1", "2"]}
    valid = b"specimen,landmark,x,y,z\ns1,1,0,0,0\ns1,2,0,0,0\ns2,1,0,0,0\ns2,2,0,0,0\n"
    assert landmarks_csv.read_points(valid, expected)[0]["s2"]["2"].shape == (3,)
    long = valid + b"s1,1,0,0,0\n" * 200
    with pytest.raises(landmarks_csv.SubmissionError, match="more than the 108 a valid file"):
        landmarks_csv.read_points(long, expected)
    with pytest.raises(landmarks_csv.SubmissionError, match="duplicate of line 2"):
        landmarks_csv.read_points(valid + b"s1,1,0,0,0\n", expected)


# --- archives that cost what the file costs (issue 33) -----------------------------------------
#
# Measured before: a 20,000-member zip of `i/.zarray` files took the whole 300 s of CPU (each
# member read opened the zip and parsed its directory again); one chunk declared at 3.9 GiB in
# a 4 MB zip drove the scorer to 2 GB before it was read; damaged zips ended `failed`
# (BadZipFile, NotImplementedError); an unknown HDF5 filter sent HDF5 to the server's plugin
# folder; and one error text listed 5,000 member names (69 KB).

TOMO_SPEC = "56x48x40,chunks=32:24:16"  # a 10x48x56 hidden slab
MAX_ARCHIVE_SECONDS = 5


@pytest.fixture(scope="module")
def tomo_dir(tmp_path_factory) -> Path:
    from tests.conftest import prepare_with_store

    return prepare_with_store("demo-tomography", tmp_path_factory.mktemp("tomo") / "t",
                              synthetic=TOMO_SPEC, seed=0)


def slab_shape(comp: Path) -> tuple[int, int, int]:
    return PreparedCompetition.open(comp).load_solution().shape


def zarray(shape, compressor: dict | None = None) -> bytes:
    """A zarr v2 `.zarray` of uint8 labels stored as one chunk."""
    return json.dumps({"zarr_format": 2, "shape": list(shape), "chunks": list(shape),
                       "dtype": "|u1", "compressor": compressor, "fill_value": 0,
                       "order": "C", "filters": None}).encode()


def zip_of(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip written field by field from (name, method, stored bytes, declared size, CRC)
    entries, so that it may declare what zipfile would never write."""
    out, directory = bytearray(), bytearray()
    for name, method, stored, size, crc in entries:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                           len(stored), size, len(raw), 0) + raw + stored
        directory += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                                 len(stored), size, len(raw), 0, 0, 0, 0, 0o644 << 16,
                                 offset) + raw
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                      len(directory), len(out), 0)
    return bytes(out + directory + end)


def stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return name, 0, data, len(data), zlib.crc32(data)


def many_zarrays(shape, n: int) -> bytes:
    """`n` deflated `k/.zarray` members: each a valid array of the slab's shape."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(n):
            archive.writestr(f"{k}/.zarray", zarray(shape))
    return buffer.getvalue()


def declared_chunk_bomb(shape, blocks: int = 62) -> bytes:
    """A zlib-compressed zarr store whose one chunk member declares (and inflates to)
    `blocks` x 64 MiB of zeros: 3.9 GiB in a 4 MB zip, CRC and all."""
    crc, zeros = 0, bytes(64 * MIB)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    raw_deflate = deflate_zeros(blocks)[2:-4]  # without the zlib header and checksum
    return zip_of([stored(".zarray", zarray(shape, {"id": "zlib", "level": 1})),
                   ("0.0.0", zipfile.ZIP_DEFLATED, raw_deflate, blocks * 64 * MIB, crc)])


def test_a_zip_of_20000_zarr_metadata_files_is_invalid_in_seconds(tomo_dir, tmp_path):
    """Refused from the listing, before any member is read, with a short message that names
    a few of them (the task's limits admit 100,000 files: this zip is within them)."""
    from competition.board import scoring
    from competition.tasks.tomography.task import TomographyTask

    comp = PreparedCompetition.open(tomo_dir)
    shape = slab_shape(tomo_dir)
    assert TomographyTask.limits.max_files == 100_000
    path = tmp_path / "many.zip"
    path.write_bytes(many_zarrays(shape, 20_000))
    assert path.stat().st_size < 5 * MIB
    start = time.monotonic()
    with pytest.raises(SubmissionError) as e:
        scoring.validate(comp, path)
    assert time.monotonic() - start < MAX_ARCHIVE_SECONDS
    text = str(e.value)
    assert "20,000 zarr metadata files" in text and "and 19,997 more" in text, text
    assert len(text) < 300
    # Fewer: each read, and the arrays found named a few at a time.
    path.write_bytes(many_zarrays(shape, 10))
    with pytest.raises(SubmissionError, match="exactly one array") as e:
        scoring.validate(comp, path)
    assert "0/.zarray, 1/.zarray, 2/.zarray and 7 more" in str(e.value)


def test_zarr_metadata_nested_thousands_deep_is_invalid(tomo_dir, tmp_path):
    """JSON, but arrays in arrays 30,000 deep: Python's decoder runs out of stack
    (RecursionError), which must read as the participant's file, not the scorer's fault."""
    from competition.board.scorer_process import score_file

    path = tmp_path / "deep.zip"
    path.write_bytes(zip_of([stored(".zarray", b"[" * 30_000 + b"]" * 30_000)]))
    payload = score_file(str(tomo_dir), str(path), "deep.zip", False)
    assert payload["status"] == Status.INVALID, payload
    assert ".zarray: JSON nested too deeply" in payload["error"]


def test_every_member_of_a_20000_member_zip_is_read_in_one_pass(tmp_path, monkeypatch):
    """The zip's directory is parsed once per SubmissionFile, not once per member read
    (which took hours on this file): counted, not timed, so a busy machine cannot fail it."""
    opened = []

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0] if args else kwargs.get("file"))
            super().__init__(*args, **kwargs)

    path = tmp_path / "many.zip"
    path.write_bytes(many_zarrays((1, 1, 1), 20_000))
    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    submission = SubmissionFile(path, Limits(max_files=20_000))
    members = submission.members()
    assert len(members) == 20_000
    for member in members[:100]:  # a regression fails here in seconds, not after hours
        submission.read_member(member)
    assert len(opened) == 1, f"the directory was parsed {len(opened)} times"
    assert sum(len(submission.read_member(m)) for m in members) == sum(m.size for m in members)
    for member in members:
        with submission.open_member(member) as stream:
            assert stream.read() == zarray((1, 1, 1))
    assert len(opened) == 1, f"the directory was parsed {len(opened)} times"
    submission.close()
    assert submission.read_member(members[-1]) == zarray((1, 1, 1))  # listed again
    assert len(opened) == 2


def test_a_directory_of_too_many_entries_is_refused_before_zipfile_lists_it(tmp_path,
                                                                             monkeypatch):
    """Entries are counted from the raw directory, where zipfile will read it (whatever the
    end record claims), so millions of them never become millions of ZipInfo objects."""
    data = bytearray(zip_of([stored(f"{k}.csv", b"1") for k in range(25)]))
    struct.pack_into("<HH", data, len(data) - 22 + 8, 1, 1)  # the end record: "1 entry"
    path = tmp_path / "many.zip"
    path.write_bytes(bytes(data))
    fewer = tmp_path / "fewer.zip"
    fewer.write_bytes(zip_of([stored(f"{k}.csv", b"1") for k in range(15)]))
    limits = Limits(max_files=10)
    with pytest.raises(SubmissionError, match="more than 10 files"):  # listed, then refused
        SubmissionFile(fewer, limits).members()

    def refuse(*args, **kwargs):
        raise AssertionError("zipfile listed a directory the limits refuse")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    with pytest.raises(SubmissionError, match="lists over 20 entries; at most 10 files"):
        SubmissionFile(path, limits).members()


@pytest.mark.parametrize("layout", ["plain", "comment", "prefix", "zip64"])
def test_the_directory_is_found_where_zipfile_finds_it(tmp_path, layout):
    """The raw count covers exactly what zipfile lists: after an archive comment, behind
    prepended bytes (a self-extracting archive), and past a Zip64 end record."""
    n = 70_000 if layout == "zip64" else 50  # over 65,535 entries: Zip64 records
    buffer = io.BytesIO()
    if layout == "prefix":
        buffer.write(b"#!/bin/sh\nexit 0\n" * 100)
    with zipfile.ZipFile(buffer, "a" if layout == "prefix" else "w") as archive:
        for k in range(n):
            archive.writestr(f"d/{k}", b"x" * (k % 3))
        archive.writestr("d/", b"")  # a folder's own entry counts too
        if layout == "comment":
            archive.comment = b"an archive comment " * 1000
    with zipfile.ZipFile(buffer) as archive:
        expected = (archive.start_dir, len(archive.infolist()))
    buffer.seek(0)
    span = directory_span(buffer)
    assert span is not None and span[0] == expected[0]
    assert count_entries(buffer, *span, 10**6) == expected[1] == n + 1
    assert count_entries(buffer, *span, 9) == 10  # stops once over the bound


def test_a_chunk_declared_at_gigabytes_is_refused_before_it_is_read(tomo_dir, tmp_path):
    """Its declared size is checked against what a chunk may take before a byte is read: a
    clean refusal naming the member, submitted as the board does (a forked scorer under a
    256 MB scoring limit), the scorer's peak memory well under that (before: the read
    reached 2 GB, and the memory error it met was reported as a damaged file)."""
    comp = competition_copy({"tomography": tomo_dir}, "tomography", tmp_path,
                            scoring_memory_mb=256)
    path = tmp_path / "bomb.zip"
    path.write_bytes(declared_chunk_bomb(slab_shape(comp)))
    assert path.stat().st_size < 4.2e6
    report = submit_measured(comp, path)
    assert report["status"] == Status.INVALID, report
    assert "0.0.0: chunk of 4,160,749,568 bytes" in report["error"], report
    assert "takes at most" in report["error"] and "memory" not in report["error"]
    assert report["children_kb"] * 1024 < 256 * MIB, report  # the scorer's peak
    assert report["seconds"] < MAX_SECONDS, report


def damaged_zip(case: str, shape) -> bytes:
    chunk = bytes(int(np.prod(shape)))
    meta = zarray(shape)
    good = [stored(".zarray", meta), stored("0.0.0", chunk)]
    if case == "method 9 raw":  # Deflate64: zipfile cannot read it
        info = f"size = {shape[2]} {shape[1]} {shape[0]}\n".encode()
        return zip_of([("a.raw", 9, chunk, len(chunk), zlib.crc32(chunk)),
                       stored("a.raw.info", info)])
    if case.startswith("method 9"):
        k = 1 if "chunk" in case else 0
        name, _, data, size, crc = good[k]
        good[k] = (name, 9, data, size, crc)
        return zip_of(good)
    if case == "bad deflate data":
        return zip_of([(".zarray", zipfile.ZIP_DEFLATED, b"\xff" * 40, len(meta),
                        zlib.crc32(meta)), good[1]])
    if case == "bad crc":
        return zip_of([good[0], ("0.0.0", 0, chunk, len(chunk), 12345)])
    if case == "zip version 9.9":
        data = bytearray(zip_of(good))
        struct.pack_into("<H", data, data.index(b"PK\x01\x02") + 6, 99)  # version needed
        return bytes(data)
    data = bytearray(zip_of(good))
    if case == "names differ":  # the local header's name is not the directory's
        at = data.index(b"PK\x03\x04") + 30
        data[at:at + 7] = b".zarrax"
    elif case == "names differ, chunk":
        at = data.index(b"PK\x03\x04", 4) + 30
        data[at:at + 5] = b"0.0.1"
    elif case == "header past the end":
        struct.pack_into("<I", data, data.index(b"PK\x01\x02") + 42, len(data) + 1000)
    return bytes(data)


DAMAGED = {
    "names differ": "damaged file (File name in directory '.zarray'",
    "names differ, chunk": "0.0.0: damaged file",
    "method 9": ".zarray: compression method 9 is not accepted",
    "method 9 chunk": "0.0.0: compression method 9 is not accepted",
    "method 9 raw": "a.raw: compression method 9 is not accepted",
    "bad deflate data": ".zarray: damaged file",
    "bad crc": "0.0.0: damaged file (Bad CRC-32",
    "zip version 9.9": "not a readable zip archive (zip file version 9.9)",
    "header past the end": ".zarray: damaged file",
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_zip_is_invalid_with_a_reason(tomo_dir, tmp_path, case):
    """Wherever zipfile meets the damage (its directory, a member's header, its data), the
    submission is `invalid` with a short reason, never `failed` as a harness fault."""
    from competition.board.scorer_process import score_file

    path = tmp_path / "damaged.zip"
    path.write_bytes(damaged_zip(case, slab_shape(tomo_dir)))
    payload = score_file(str(tomo_dir), str(path), "damaged.zip", False)
    assert payload["status"] == Status.INVALID, payload
    assert DAMAGED[case] in payload["error"] and len(payload["error"]) < 200, payload


def test_a_damaged_member_read_as_a_stream_is_a_submission_error(tmp_path):
    """The same through `open_member` (the raw and NIfTI readers stream members)."""
    path = tmp_path / "damaged.zip"
    data = bytearray(zip_of([stored("a.raw", b"x" * 100)]))
    data[data.index(b"PK\x03\x04") + 30] = ord("b")  # the local header names "b.raw"
    path.write_bytes(bytes(data))
    submission = SubmissionFile(path, Limits(max_files=2))
    (member,) = submission.members()
    with pytest.raises(SubmissionError, match="a.raw: damaged archive member"):
        submission.open_member(member)
    path.write_bytes(zip_of([("a.raw", zipfile.ZIP_DEFLATED, b"\xff" * 40, 100, 0)]))
    submission = SubmissionFile(path, Limits(max_files=2))
    (member,) = submission.members()
    with submission.open_member(member) as stream, \
            pytest.raises(SubmissionError, match="a.raw: damaged archive member"):
        stream.read()


def h5_with_filter(path: Path, shape, case: str) -> Path:
    import h5py

    labels = np.zeros(shape, np.uint8)
    with h5py.File(path, "w") as f:
        if case == "unknown 40000":  # no such filter here: written as raw chunks
            dataset = f.create_dataset("labels", shape=shape, dtype="u1", chunks=shape,
                                       compression=40000, allow_unknown_filter=True)
            dataset.id.write_direct_chunk((0, 0, 0), labels.tobytes())
        elif case == "fletcher32":
            f.create_dataset("labels", data=labels, chunks=shape, fletcher32=True)
        elif case == "scaleoffset":
            f.create_dataset("labels", data=labels, chunks=shape, scaleoffset=0)
        else:
            f.create_dataset("labels", data=labels, chunks=shape, compression="lzf",
                             shuffle=True)
    return path


@pytest.mark.parametrize("case, code", [("unknown 40000", 40000), ("fletcher32", 3),
                                        ("scaleoffset", 6)])
def test_hdf5_filters_outside_the_documented_list_are_refused(tomo_dir, tmp_path, case, code):
    """Refused from the dataset's filter pipeline before its data is read: HDF5 would look
    for an unknown filter among the server's plugins (and name their folder)."""
    from competition.board import scoring

    comp = PreparedCompetition.open(tomo_dir)
    path = h5_with_filter(tmp_path / "f.h5", slab_shape(tomo_dir), case)
    with pytest.raises(SubmissionError) as e:
        scoring.validate(comp, path)
    text = str(e.value)
    assert f"labels: HDF5 filter {code} is not accepted" in text, text
    assert "gzip (1), shuffle (2), lzf (32000)" in text
    assert "plugin" not in text and "/usr" not in text
    lzf = h5_with_filter(tmp_path / "lzf.h5", slab_shape(tomo_dir), "lzf")
    assert "valid tomography submission" in scoring.validate(comp, lzf)


def test_a_grid_of_tiny_hdf5_chunks_is_refused_before_it_is_read(tomo_dir, tmp_path,
                                                                 monkeypatch):
    """1x1x1 chunks, none stored (all the fill value): a file of a few KB that costs a call
    per voxel (10 s of CPU on a 64x192x192 slab). Refused from the dataset's layout before
    any is read; this slab is small, so the bound is lowered to what its voxels pass."""
    import h5py

    from competition.board import scoring
    from competition.tasks.tomography import submission

    comp = PreparedCompetition.open(tomo_dir)
    shape = slab_shape(tomo_dir)
    monkeypatch.setattr(submission, "MAX_CHUNKS", math.prod(shape) // 2)
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", shape=shape, dtype="uint8", chunks=(1, 1, 1))
    with pytest.raises(SubmissionError, match=f"make a grid of {math.prod(shape):,} chunks"):
        scoring.validate(comp, path)
    with h5py.File(path, "w") as f:  # a chunk per slice: a grid of a few
        f.create_dataset("labels", data=np.zeros(shape, np.uint8), chunks=(1, *shape[1:]))
    assert "valid tomography submission" in scoring.validate(comp, path)


def test_error_texts_are_clipped_for_participants_and_logged_whole(monkeypatch, caplog):
    """Whatever a scoring outcome's error says, a participant sees at most MAX_ERROR_CHARS
    of it, marked as cut; the organizers' log has it all."""
    import multiprocessing

    from competition.board import scorer_process

    assert clipped("short") == "short" and clipped("x" * 500) == "x" * 500
    cut = clipped("y" * 69_000)
    assert len(cut) == MAX_ERROR_CHARS and cut.endswith("… (cut; 69,000 characters in all)")
    long = "0.0.0: " + ", ".join(f"{k}/.zarray" for k in range(5000))

    def invalid(root, path, file_name, details):
        return {"status": Status.INVALID, "error": long}

    def broken(root, path, file_name, details):
        raise RuntimeError(long)

    for fake, status in ((invalid, Status.INVALID), (broken, Status.FAILED)):
        monkeypatch.setattr(scorer_process, "score_file", fake)
        receive, send = multiprocessing.Pipe(duplex=False)
        caplog.clear()
        child = threading.Thread(target=scorer_process.child_main,
                                 args=(send, "root", "path", "team.zip", False))
        child.start()  # a payload larger than the pipe's buffer waits for its reader
        payload = receive.recv()
        child.join()
        assert payload["status"] == status
        assert len(payload["error"]) <= MAX_ERROR_CHARS
        assert payload["error"].endswith("characters in all)")
        assert any(long in record.getMessage() and "team.zip" in record.getMessage()
                   for record in caplog.records)
