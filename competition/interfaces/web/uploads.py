"""Receiving one submitted file: the multipart body is parsed as it streams in, the file
written straight to a private temporary folder (never whole in memory, always deleted), each
part bounded.

The caller has already checked the token (a dependency, before any byte of the body was
read); here the declared size is checked before parsing, the file's size while it streams,
the CSRF token of a cookie session before the file's first byte, and the file's name and the
message before the board sees them. Every refusal is an HTTPException with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from competition.configs import RulesConfig

MAX_NAME_BYTES = 255  # a file name on every common file system
MAX_TOKEN_BYTES = 200  # the CSRF token field
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_PARTS = 8
# The two routes that take a file: their bodies are streamed (see received_upload), with the
# competition's size limit; every other body is small.
UPLOAD_PATHS = frozenset({"/submit", "/api/submissions"})
FIELDS = ("message", "csrf_token")
FILE_FIELD = "file"
UPLOAD_SCHEMA: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": [FILE_FIELD],
        "properties": {
            FILE_FIELD: {"type": "string", "format": "binary",
                         "description": "the submission file (its name is kept)"},
            # The documented default; the competition's rules.max_message_chars applies.
            "message": {"type": "string",
                        "maxLength": RulesConfig.model_fields["max_message_chars"].default,
                        "description": "a note to remember the submission by"}}}}}}}


class UploadRefused(HTTPException):
    """The upload is refused before the board sees it (the status says why: 400, 413...)."""


@dataclass
class Upload:
    path: Path  # the file, under the name it was sent with, in a private temporary folder
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def message(self) -> str | None:
        return self.fields.get("message") or None


def check_file_name(name: str) -> str:
    """The name a file was sent with, if it is a plain file name; else a 400 saying why."""
    if not name.strip():
        raise UploadRefused(400, "the file has no name")
    if name in (".", ".."):
        raise UploadRefused(400, f"{name!r} is not a file name")
    if "/" in name or "\\" in name:
        raise UploadRefused(400, "the file name must be a name alone, without / or \\")
    for c in name:
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise UploadRefused(400, f"the file name contains a control or invisible "
                                     f"character (U+{ord(c):04X})")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise UploadRefused(400, f"the file name is {size} bytes long; at most "
                                 f"{MAX_NAME_BYTES} (UTF-8)")
    return name


def check_message(text: str, limit: int) -> str:
    if len(text) > limit:
        raise UploadRefused(422, f"the message has {len(text)} characters; at most {limit}")
    return text


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused(400, f"the {what} is not UTF-8 text") from None


class _Parts:
    """python-multipart's callbacks: each part's headers, then its data to a field or to
    the file."""

    def __init__(self, folder: Path, max_file_bytes: int, max_message_chars: int,
                 before_file: Callable[[dict[str, str]], None],
                 extra: Mapping[str, int] | None = None, file_field: str = FILE_FIELD,
                 file_required: bool = True):
        self.folder, self.max_file_bytes, self.before_file = folder, max_file_bytes, before_file
        self.max_message_chars = max_message_chars
        # Other forms' fields (e.g. a course's new-competition form), each with its cap.
        self.extra = dict(extra or {})
        self.file_field, self.file_required = file_field, file_required
        self.max_parts = MAX_PARTS + len(self.extra)
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self.file: IO[bytes] | None = None
        self.file_bytes = 0
        self.pending: list[bytes] = []  # file data parsed, to be written off the event loop
        self.parts = 0
        self._reset()

    def _reset(self) -> None:
        self.header_name, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.name: str | None = None
        self.in_file = False
        self.data = bytearray()

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise UploadRefused(400, f"the form has more than {self.max_parts} parts")
        self._reset()

    def _header_bytes(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadRefused(400, "a part's headers are over "
                                     f"{MAX_PART_HEADER_BYTES // 1024} KiB")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_bytes(end - start)
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_bytes(end - start)
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_name.strip().lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise UploadRefused(400, "a part of the form has no name")
        self.name = _decode(options[b"name"], "field name")
        if b"filename" not in options:
            return
        if not options[b"filename"] and not self.file_required:
            return  # a browser's empty file input (no file chosen): a field, ignored
        if self.name != self.file_field:
            raise UploadRefused(400, f"send the file in the field {self.file_field!r}, "
                                     f"not {self.name[:50]!r}")
        if self.path is not None:
            raise UploadRefused(400, "send one file at a time")
        name = check_file_name(_decode(options[b"filename"], "file name"))
        self.before_file(self.fields)  # e.g. the CSRF token: before a byte of the file
        self.path = self.folder / name
        self.file = self.path.open("xb")
        self.in_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise UploadRefused(413, f"the file is over the size limit of "
                                         f"{self.max_file_bytes / 1e6:.1f} MB")
            self.pending.append(data[start:end])
            return
        self.data += data[start:end]
        if self.name == "message":
            # A UTF-8 character has at most 4 bytes: past that many, too many characters.
            if len(self.data) > 4 * self.max_message_chars:
                raise UploadRefused(422, f"the message is longer than "
                                         f"{self.max_message_chars} characters")
        elif len(self.data) > self.extra.get(str(self.name), MAX_TOKEN_BYTES):
            raise UploadRefused(400, f"the field {str(self.name)[:50]!r} is too long (at "
                                     f"most {self.extra.get(str(self.name), MAX_TOKEN_BYTES)} "
                                     "bytes)")

    def on_part_end(self) -> None:
        if not self.in_file and (self.name in FIELDS or self.name in self.extra):
            text = _decode(bytes(self.data), str(self.name))
            self.fields[str(self.name)] = text if self.name != "message" else \
                check_message(text, self.max_message_chars)
        self.in_file = False

    def flush(self) -> None:
        """Write the file data parsed so far (in a worker thread)."""
        if self.pending and self.file is not None:
            self.file.write(b"".join(self.pending))
        self.pending.clear()


@contextlib.asynccontextmanager
async def received_upload(request: Request, max_file_bytes: int, max_message_chars: int,
                          before_file: Callable[[dict[str, str]], None], *,
                          on_bytes: Callable[[int], None] | None = None,
                          idle_seconds: float | None = None) -> AsyncIterator[Upload]:
    """The request's file, streamed into a temporary folder that is removed on leaving, with
    the form's other fields (see `received_form`)."""
    async with received_form(request, max_file_bytes, max_message_chars, before_file,
                             on_bytes=on_bytes, idle_seconds=idle_seconds) as (path, fields):
        assert path is not None  # required
        yield Upload(path, fields)


@contextlib.asynccontextmanager
async def received_form(request: Request, max_file_bytes: int, max_message_chars: int,
                        before_file: Callable[[dict[str, str]], None], *,
                        on_bytes: Callable[[int], None] | None = None,
                        idle_seconds: float | None = None,
                        extra: Mapping[str, int] | None = None,
                        file_field: str = FILE_FIELD, file_required: bool = True,
                        folder_in: Path | None = None,
                        ) -> AsyncIterator[tuple[Path | None, dict[str, str]]]:
    """The request's file, streamed into a temporary folder that is removed on leaving, with
    the form's other fields (a message of at most `max_message_chars`). `before_file(fields)`
    runs when the file part begins (with the fields sent before it) and may refuse the upload
    by raising; `on_bytes(n)` runs as each piece of the body arrives, before it is written (it
    counts the temporary space, and may refuse). A body that stops arriving for
    `idle_seconds` is a 408: a stalled client holds its upload slot no longer. Other forms:
    `extra` fields (name: most bytes), the file in `file_field`, which with `file_required`
    False may be missing (its path is None then), the
    temporary folder made in `folder_in` (so that the file can be renamed out of it)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRefused(415, f"send the file as multipart/form-data, in a field named "
                                 f"{file_field!r}")
    folder = Path(tempfile.mkdtemp(prefix="competition-upload-", dir=folder_in))
    parts = _Parts(folder, max_file_bytes, max_message_chars, before_file, extra, file_field,
                   file_required)
    try:
        parser = MultipartParser(options[b"boundary"], {
            "on_part_begin": parts.on_part_begin, "on_part_data": parts.on_part_data,
            "on_part_end": parts.on_part_end, "on_header_field": parts.on_header_field,
            "on_header_value": parts.on_header_value, "on_header_end": parts.on_header_end,
            "on_headers_finished": parts.on_headers_finished})
        try:
            async for chunk in _arriving(request, idle_seconds):
                if on_bytes is not None:
                    on_bytes(len(chunk))
                parser.write(chunk)
                if parts.pending:
                    await run_in_threadpool(parts.flush)
            parser.finalize()
        except FormParserError:
            raise UploadRefused(400, "the upload is not valid multipart/form-data") from None
        if parts.file is not None:
            parts.file.close()
        if parts.path is None and file_required:
            raise UploadRefused(422, f"no file: send it in a field named {file_field!r}")
        yield parts.path, parts.fields
    finally:
        if parts.file is not None:
            parts.file.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _arriving(request: Request, idle_seconds: float | None) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive, or a 408 after `idle_seconds` without one."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), idle_seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadRefused(408, f"no data arrived for {idle_seconds:g} s: the upload "
                                     "was stopped; send it again") from None
        yield chunk
