"""Running a participant's unpacked entry on a competition's data: the one call the harness
makes (`run_entry`).

The entry sees /entry (its folder, read-only), /data/public (the competition's public files,
read-only, with the hidden test inputs bound where the public layout expects them) and /out
(its output folder, the only place it can write besides a private /tmp). It writes
/out/submission<suffix>, which the harness then scores like an uploaded file.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from competition.errors import CompetitionError
from competition.sandbox import bwrap, process, seccomp, uids
from competition.sandbox.limits import CodeLimits
from competition.sandbox.process import SandboxResult

log = logging.getLogger(__name__)

ENTRY, PUBLIC, OUT = "/entry", "/data/public", "/out"


def public_view(public_dir: Path, hidden_inputs: dict[str, Path]) -> list[tuple[Path, str]]:
    """(host path, path inside) of every entry of the public folder, and of each hidden
    input at its place in the public layout (replacing a public entry of that name). A folder
    holding a hidden input is not bound whole (its bind would be read-only, with no room for
    the input): its entries are, one by one, in a folder of the sandbox's own."""
    hidden = {}
    for rel, path in hidden_inputs.items():
        rel_path = Path(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or not rel_path.parts:
            raise ValueError(f"hidden input {rel!r} must be a relative path")
        hidden[rel_path] = Path(path)
    expanded = {parent for rel in hidden for parent in rel.parents if parent != Path(".")}
    views: list[tuple[Path, str]] = []

    def add(folder: Path) -> None:
        host = public_dir / folder
        names = set(os.listdir(host)) if host.is_dir() else set()
        names |= {r.name for r in [*hidden, *expanded] if r.parent == folder}
        for name in sorted(names):
            rel = folder / name
            if rel in hidden:
                views.append((hidden[rel], f"{PUBLIC}/{rel}"))
            elif rel in expanded:
                add(rel)
            else:
                views.append((host / name, f"{PUBLIC}/{rel}"))

    add(Path("."))
    return views


def _inner(task_name: str, entry: str, public: str, out: str) -> list[str]:
    return [sys.executable, "-m", "competition.sandbox.inside", "--task", task_name,
            "--entry", entry, "--public", public, "--out", out]


def _submission(out_dir: Path, task_name: str) -> Path | None:
    from competition.tasks import get_task

    path = out_dir / ("submission" + get_task(task_name).submission_suffix)
    return path if path.is_file() and not path.is_symlink() else None


def run_entry(entry_dir: Path, task_name: str, public_dir: Path,
              hidden_inputs: dict[str, Path], out_dir: Path, limits: CodeLimits,
              sandbox: Literal["bwrap", "none"] = "bwrap",
              started: Callable[[int], None] | None = None
              ) -> tuple[SandboxResult, Path | None]:
    """Train and predict with the entry under `limits`; the result and the submission file it
    wrote into `out_dir` (None when there is none). sandbox="none" runs it in a plain process
    under the same limits: for the organizers' own, trusted entries only. Without a working
    bubblewrap, sandbox="bwrap" raises CompetitionError (never runs unconfined)."""
    entry_dir, public_dir, out_dir = Path(entry_dir), Path(public_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sandbox == "bwrap":
        reason = bwrap.unavailable_reason()
        if reason is not None:
            raise CompetitionError(f"code submissions cannot run: {reason}")
        result = _run_bwrap(entry_dir, task_name, public_dir, hidden_inputs, out_dir,
                            limits, started)
    else:
        result = _run_plain(entry_dir, task_name, public_dir, hidden_inputs, out_dir,
                            limits, started)
    log.info("entry %s on %s: %s in %.1f s", entry_dir.name, task_name,
             result.cause or "ok", result.wall_seconds)
    return result, _submission(out_dir, task_name)


def _run_bwrap(entry_dir: Path, task_name: str, public_dir: Path,
               hidden_inputs: dict[str, Path], out_dir: Path, limits: CodeLimits,
               started: Callable[[int], None] | None) -> SandboxResult:
    return run_sandboxed(_inner(task_name, ENTRY, PUBLIC, OUT),
                         ro_binds=[(entry_dir, ENTRY), *public_view(public_dir, hidden_inputs)],
                         out_dir=out_dir, limits=limits, started=started)


def run_sandboxed(inner_argv: list[str], *, ro_binds: list[tuple[Path, str]], out_dir: Path,
                  limits: CodeLimits,
                  started: Callable[[int], None] | None = None) -> SandboxResult:
    """`inner_argv` in the bubblewrap sandbox with `ro_binds` and `out_dir` as /out (the only
    writable folder but its /tmp), as a uid of its own when this process is root."""
    as_root = bwrap.root_mode()
    filter_fd = seccomp.filter_fd()  # memory and disk the watchdog cannot see: refused
    try:
        with uids.lease() as uid:
            job_uid = uid if os.geteuid() == 0 else None
            argv = bwrap.sandbox_argv(inner_argv, ro_binds=ro_binds,
                                      rw_binds=[(out_dir, OUT)], tmpfs_size_mb=limits.disk_mb,
                                      uid=uid if as_root else None, seccomp_fd=filter_fd)
            return process.run(argv, limits=limits, env=bwrap.SANDBOX_ENV, out_dir=out_dir,
                               uid=job_uid, switch_user=job_uid is not None and not as_root,
                               signal_exit_codes=True, started=started,
                               pass_fds=() if filter_fd is None else (filter_fd,))
    finally:
        if filter_fd is not None:
            os.close(filter_fd)


def _link(root: Path, rel: Path, source: Path) -> None:
    link = root / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source.resolve())


def _run_plain(entry_dir: Path, task_name: str, public_dir: Path,
               hidden_inputs: dict[str, Path], out_dir: Path, limits: CodeLimits,
               started: Callable[[int], None] | None) -> SandboxResult:
    """The same runner and limits in a plain process of this uid (the Python runtime and the
    data may sit where no other uid can reach), with a folder of symlinks as the public
    view and its paths passed as arguments."""
    with tempfile.TemporaryDirectory(prefix="public-view-") as view:
        root = Path(view)
        for source, dest in public_view(public_dir, hidden_inputs):
            _link(root, Path(dest).relative_to(PUBLIC), source)
        env = {**bwrap.sandbox_env(), "HOME": str(out_dir), "MPLCONFIGDIR": str(out_dir),
               "NUMBA_CACHE_DIR": str(out_dir), "KERAS_HOME": str(out_dir / "keras")}
        return process.run(_inner(task_name, str(entry_dir.resolve()), str(root),
                                  str(out_dir.resolve())),
                           limits=limits, env=env, out_dir=out_dir, started=started)
