"""Where a remote command's server and token come from, in this order: the flags, the
environment (COMPETITION_SERVER, COMPETITION_TOKEN), the credentials file that `competition
login` writes ($XDG_CONFIG_HOME/competition/credentials.toml, else ~/.config/...).

The file holds one table per portal, keyed by its URL, so one person may hold tokens for
several portals. Like ssh and kaggle.json, it is refused when others may read it: a token read
by someone else is a team's submissions in their hands."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from competition.errors import CompetitionError

SERVER_ENV = "COMPETITION_SERVER"
TOKEN_ENV = "COMPETITION_TOKEN"


@dataclass(frozen=True)
class Token:
    """A token and where it came from: a refusal names the source, never the value."""

    value: str = field(repr=False)
    source: str


def credentials_path() -> Path:
    # The XDG spec: a relative $XDG_CONFIG_HOME is invalid and ignored.
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "competition" / "credentials.toml"


def normal_server(url: str) -> str:
    """The portal's base URL without a trailing slash, or a clear refusal (an http(s) URL
    with a host, no query, and no user:password part, which would end up in logs)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
            parts.fragment or "@" in parts.netloc:
        raise CompetitionError(f"the server must be a portal's address such as "
                               f"http://127.0.0.1:8000 or http://HOST:8000/c/SLUG, not "
                               f"{text[:100]!r}")
    return text.rstrip("/")


def server_of(flag: str | None) -> str | None:
    value = flag or os.environ.get(SERVER_ENV)
    return normal_server(value) if value else None


def token_for(server: str, flag: str | None) -> Token | None:
    """The token for `server`: --token, else $COMPETITION_TOKEN, else the credentials file's
    entry for the server (or for the longest URL it starts with: a course portal's token
    serves each of its competitions, http://HOST/c/SLUG)."""
    if flag:
        return checked(Token(flag.strip(), "--token"))
    if os.environ.get(TOKEN_ENV):
        return checked(Token(os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"))
    path = credentials_path()
    if not path.exists():
        return None
    tokens = read_credentials(path)
    for key in sorted(tokens, key=len, reverse=True):
        if server == key or server.startswith(key + "/"):
            return checked(Token(tokens[key], f"{path} [{key}]"))
    return None


def checked(token: Token) -> Token:
    # A header cannot hold spaces or control characters; httpx would otherwise refuse it
    # with a message that quotes the value.
    if not token.value or not all(33 <= ord(c) < 127 for c in token.value):
        raise CompetitionError(f"the token from {token.source} is not a token (empty, or with "
                               "spaces or characters a token does not have)")
    return token


def read_credentials(path: Path) -> dict[str, str]:
    """{server URL: token}; refused when the file is a link, or readable or writable by
    group or others."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise CompetitionError(f"{path} is not a plain file; remove it and run "
                               "`competition login --server URL` again")
    if os.name == "posix" and info.st_mode & 0o077:
        raise CompetitionError(f"{path} may be read by others (mode "
                               f"{stat.S_IMODE(info.st_mode):o}): run `chmod 600 {path}` (and "
                               "ask for new tokens if others could have read it)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        # The parser's message gives a line and column, never the text.
        raise CompetitionError(f"{path} is not valid TOML ({e}); fix it or remove it and run "
                               "`competition login` again") from None
    tokens = {}
    for key, table in data.items():
        if not isinstance(table, dict) or not isinstance(table.get("token"), str):
            raise CompetitionError(f"{path}: [{key[:100]!r}] needs a line token = \"...\"")
        tokens[key.rstrip("/")] = table["token"]
    return tokens


def save_token(server: str, token: str) -> Path:
    """Write (or replace) the server's token in the credentials file, readable by its owner
    only: a new file written beside it with mode 0600, then renamed over it."""
    checked(Token(token, "the login"))
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tokens = read_credentials(path) if path.exists() else {}
    tokens[server] = token
    # JSON's string syntax is valid TOML for a basic string (escapes included).
    text = "".join(f"[{json.dumps(key)}]\ntoken = {json.dumps(value)}\n\n"
                   for key, value in sorted(tokens.items()))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-", suffix=".toml")
    try:  # mkstemp makes the file 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
