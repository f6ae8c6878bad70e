"""What the competition page publishes: the description as sanitised HTML, and the public
files, one by one or as one zip streamed while it is written (never held in memory)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

CHUNK = 1 << 20


def description_html(markdown: str) -> str:
    """The README rendered (CommonMark and tables, raw HTML off) and sanitised (nh3)."""
    import nh3
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return nh3.clean(rendered)


class _Sink:
    """A write-only stream whose bytes are taken away as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def stream_zip(root: Path, files: list[str]) -> Iterator[bytes]:
    """A zip of `files` (relative to `root`), produced chunk by chunk. Stored, not deflated:
    images and TIFF stacks hardly compress, and storing keeps the server's CPU free."""
    sink = _Sink()
    stream = cast(IO[bytes], sink)  # write-only, unseekable: zipfile writes data descriptors
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED,
                         allowZip64=True) as archive:
        for rel in files:
            info = zipfile.ZipInfo.from_file(root / rel, arcname=rel)
            with (root / rel).open("rb") as source, archive.open(info, "w",
                                                                 force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def folder_summary(files: list[str]) -> tuple[list[str], dict[str, int]]:
    """Top-level files, and each top-level folder with its number of files."""
    top = [f for f in files if "/" not in f]
    folders: dict[str, int] = {}
    for f in files:
        if "/" in f:
            head = f.split("/", 1)[0]
            folders[head] = folders.get(head, 0) + 1
    return top, folders
