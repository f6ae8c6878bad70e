"""Submissions opened lazily by path: a file, a folder or a zip, bounded before anything is
decoded (sizes, member counts, names that leave the archive, members that unpack to more than
they declare)."""

from __future__ import annotations

import os
import zipfile

import pytest

from competition.errors import SubmissionError
from competition.formats.files import Limits, SubmissionFile

ROOMY = Limits(max_bytes=10_000, max_files=3, max_unpacked_bytes=10_000)


def test_one_file_is_read_within_its_limit(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert SubmissionFile(path, ROOMY).read_bytes() == b"a,b\n1,2\n"
    assert SubmissionFile(path, ROOMY).kind == "file"
    with pytest.raises(SubmissionError, match="over the size limit"):
        SubmissionFile(path, Limits(max_bytes=4)).read_bytes()
    path.write_bytes(b"")
    with pytest.raises(SubmissionError, match="empty"):
        SubmissionFile(path, ROOMY).read_bytes()
    with pytest.raises(SubmissionError, match="not found"):
        SubmissionFile(tmp_path / "missing.csv", ROOMY).read_bytes()


def test_a_folder_lists_its_files_and_refuses_links_and_excess(tmp_path):
    folder = tmp_path / "cases"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.nii.gz").write_bytes(b"x" * 10)
    (folder / "deep" / "b.nii.gz").write_bytes(b"y" * 20)
    submission = SubmissionFile(folder, ROOMY)
    assert submission.kind == "folder"
    members = submission.members()
    assert [(m.name, m.size) for m in members] == [("a.nii.gz", 10), ("deep/b.nii.gz", 20)]
    assert submission.read_member(members[1]) == b"y" * 20
    with pytest.raises(SubmissionError, match="one file"):
        submission.read_bytes()
    (folder / "c").write_bytes(b"z")
    (folder / "d").write_bytes(b"z")
    with pytest.raises(SubmissionError, match="more than 3 files"):
        submission.members()
    (folder / "c").unlink()
    (folder / "d").unlink()
    os.symlink("/etc/passwd", folder / "link")
    with pytest.raises(SubmissionError, match="links are not followed"):
        submission.members()


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def test_a_zip_is_bounded_by_its_directory_before_reading(tmp_path):
    good = make_zip(tmp_path / "good.zip", [("a.csv", b"1" * 100), ("dir/b.csv", b"2")])
    submission = SubmissionFile(good, ROOMY)
    assert submission.kind == "zip"
    assert [m.name for m in submission.members()] == ["a.csv", "dir/b.csv"]
    assert submission.read_member(submission.members()[0]) == b"1" * 100
    big = make_zip(tmp_path / "big.zip", [("a.csv", b"0" * 20_000)])  # compresses to ~50 B
    with pytest.raises(SubmissionError, match="unpack to over"):
        SubmissionFile(big, ROOMY).members()
    many = make_zip(tmp_path / "many.zip", [(f"{k}.csv", b"1") for k in range(4)])
    with pytest.raises(SubmissionError, match="more than 3 files"):
        SubmissionFile(many, ROOMY).members()
    for name in ("../escape.csv", "/abs.csv", "C:/x.csv", "a/../../b.csv"):
        evil = make_zip(tmp_path / "evil.zip", [(name, b"1")])
        with pytest.raises(SubmissionError, match="outside the archive"):
            SubmissionFile(evil, ROOMY).members()
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(SubmissionError, match="not a readable zip"):
        SubmissionFile(tmp_path / "broken.zip", ROOMY).members()


def test_a_member_that_lies_about_its_size_stops_at_the_declared_size(tmp_path):
    path = make_zip(tmp_path / "liar.zip", [("a.csv", b"A" * 5000)])
    data = bytearray(path.read_bytes())
    # Declare 100 bytes in both the local header and the central directory.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at:at + 4] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    submission = SubmissionFile(path, ROOMY)
    (member,) = submission.members()
    assert member.size == 100
    with pytest.raises(SubmissionError, match="a.csv"):
        submission.read_member(member)
