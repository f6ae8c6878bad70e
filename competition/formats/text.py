"""Decoding text submissions: UTF-8 with an optional BOM, LF or CRLF line ends."""

from __future__ import annotations

import csv
import io

from competition.errors import SubmissionError


def decode_text(data: bytes) -> str:
    """UTF-8 text without BOM; CRLF and CR become LF."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SubmissionError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", where=f"line {line}"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SubmissionError("contains a NUL byte: this is not a text CSV", where=f"line {line}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_csv_rows(data: bytes, expected_header: list[str],
                  max_lines: int | None = None) -> list[tuple[int, list[str]]]:
    """Rows after the header as (line number, fields); header and field counts are checked.
    With `max_lines`, a longer file is refused before any line is split (a reader that knows
    how many rows a valid file has bounds what it builds)."""
    text = decode_text(data)
    if not text.strip():
        raise SubmissionError("the file holds no text")
    if max_lines is not None:
        n_lines = text.count("\n") + (not text.endswith("\n"))
        if n_lines > max_lines:
            raise SubmissionError(f"the file has {n_lines} lines, more than the {max_lines} a "
                                  "valid file of this competition can have")
    if '"' not in text:
        return _split_rows(text, expected_header)
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        raise SubmissionError(f"malformed CSV header ({e})", where="line 1") from None
    _check_header(header, expected_header)
    rows = []
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            if len(fields) != len(expected_header):
                raise SubmissionError(
                    f"{len(fields)} fields; expected {len(expected_header)} "
                    f"({','.join(expected_header)})",
                    where=f"line {line}",
                )
            rows.append((line, fields))
    except csv.Error as e:
        raise SubmissionError(f"malformed CSV ({e})", where=f"line {reader.line_num}") from None
    return rows


def _check_header(header: list[str], expected: list[str]) -> None:
    header = [h.strip() for h in header]
    if header != expected:
        raise SubmissionError(
            f"header is {','.join(header)!r}; expected {','.join(expected)!r}", where="line 1"
        )


def _split_rows(text: str, expected_header: list[str]) -> list[tuple[int, list[str]]]:
    """The fast path for text without quotes: a plain split, the same rules as csv's."""
    lines = text.split("\n")
    _check_header(lines[0].split(","), expected_header)
    n = len(expected_header)
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != n:
            raise SubmissionError(
                f"{len(fields)} fields; expected {n} ({','.join(expected_header)})",
                where=f"line {number}",
            )
        rows.append((number, fields))
    return rows
