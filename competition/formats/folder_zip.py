"""A folder submission as one file: its deterministic zip (pure but for the files it reads).

The store keeps submitted files, not folders; a caller given a folder (the command line's
`submit`) zips it first. The folder is listed within the limits first (file count, sizes,
no links: `SubmissionFile.members`), and the zip is deterministic (names sorted, fixed time
and permissions), so the same folder gives the same bytes and the store's duplicate check
still recognises a resubmitted folder.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from competition.errors import SubmissionError
from competition.formats.files import Limits, SubmissionFile

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 20


def zip_folder(folder: Path, dest: Path, limits: Limits) -> Path:
    """Write the files of `folder` (relative names) into the zip `dest`; returns `dest`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     src = Path(tmp, "sub"); src.mkdir(); _ = Path(src, "a.txt").write_text("a")
    ...     one = zip_folder(src, Path(tmp, "1.zip"), Limits(max_files=4)).read_bytes()
    ...     two = zip_folder(src, Path(tmp, "2.zip"), Limits(max_files=4)).read_bytes()
    ...     zipfile.ZipFile(Path(tmp, "1.zip")).namelist(), one == two
    (['a.txt'], True)
    """
    folder, dest = Path(folder), Path(dest)
    members = SubmissionFile(folder, limits).members()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            left = member.size
            with (folder / member.name).open("rb") as source, archive.open(info, "w") as out:
                while chunk := source.read(min(CHUNK, left + 1)):
                    left -= len(chunk)
                    if left < 0:  # it grew since it was listed
                        raise SubmissionError("the file grew while it was zipped",
                                              where=member.name)
                    out.write(chunk)
    return dest
