"""Where a competition's app is mounted. One competition served alone sits at the root; in a
course (course.py) each sits under `/c/{slug}`, and Starlette's `Mount` then keeps the full
path in `scope["path"]` and the prefix in `scope["root_path"]`. Every link, redirect and path
check goes through these helpers, so the same app works at either place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection


def base_of(scope: Mapping[str, Any]) -> str:
    """The app's prefix without a trailing slash ("" at the root, "/c/nuclei" in a course)."""
    root: str = scope.get("root_path", "") or ""
    return root.rstrip("/")


def local_path_of(scope: Mapping[str, Any]) -> str:
    """The request's path inside the app (the prefix taken off): what routes are matched on."""
    path: str = scope["path"]
    base = base_of(scope)
    if base and (path == base or path.startswith(base + "/")):
        return path[len(base):] or "/"
    return path


def base(request: HTTPConnection) -> str:
    return base_of(request.scope)


def local_path(request: HTTPConnection) -> str:
    return local_path_of(request.scope)


def url(request: HTTPConnection, path: str) -> str:
    """An absolute path inside the app: `url(request, "/login")` is "/c/nuclei/login" there."""
    return base(request) + path


def course_root(request: HTTPConnection) -> str:
    """The course's own prefix (where its home page and sign-in are), without a trailing
    slash: the top-level app's root_path (what a proxy mounts the whole portal at)."""
    root: str = request.scope.get("app_root_path", "") or ""
    return root.rstrip("/")
