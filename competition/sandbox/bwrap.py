"""The bubblewrap (bwrap) command line that confines a participant's code.

The sandbox sees: the system's /usr (and /bin, /lib, ... as this host lays them out), a
minimal /etc, the Python runtime and the harness's two packages read-only, GPU device nodes,
the binds its caller gives, a private size-limited /tmp, no network, its own process tree,
and an environment of a few fixed variables. Everything else of the host is absent: the
repository (its data/ holds hidden labels), /root, other competitions.

Two ways to run it:
- As root with CAP_SYS_ADMIN (this harness's servers): bwrap builds the namespaces itself (no
  user namespace) and `setpriv` makes the code a dedicated unprivileged uid as its last step.
  The uid is a real one on the host, so RLIMIT_NPROC holds (it never holds for uid 0), and
  bwrap, still root, can bind folders the sandbox uid could not reach (/root/.pyenv, a 0700
  pytest folder).
- Otherwise: bwrap unprivileged in a user namespace, started by the job's uid (the caller
  drops to it when root lacks CAP_SYS_ADMIN, as in a default Docker container).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# The sandbox's whole environment. bwrap is pid 1 inside and its /proc/1/environ is visible
# there, so bwrap itself is started with this mapping too, never the harness's environment.
SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "MPLCONFIGDIR": "/tmp",
    "NUMBA_CACHE_DIR": "/tmp",
    "KERAS_HOME": "/tmp/keras",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
SYSTEM_DIRS = ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")
ETC_FILES = ("/etc/ld.so.cache", "/etc/nsswitch.conf", "/etc/localtime")
CAP_SYS_ADMIN = 21
TRIAL_TIMEOUT_S = 30


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin:/usr/sbin")


def root_mode() -> bool:
    """Whether bwrap runs as root without a user namespace (and setpriv drops to the job's
    uid inside): root holding CAP_SYS_ADMIN."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def _namespaces(as_root: bool) -> list[str]:
    if as_root:  # every namespace but the user one; caps are dropped by setpriv
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try"]
    return ["--unshare-all", "--cap-drop", "ALL"]


def _drop_to(uid: int) -> list[str]:
    """setpriv as the sandbox's last step: the job's uid and gid, no groups, no capabilities
    (not even in the bounding set), and no way back (no_new_privs)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


class _Args:
    """bwrap arguments, creating each mount point's parent folders 0755 first (bwrap would
    make them 0700 as root, closing them to the sandbox's uid)."""

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.made = {"/"}

    def parents(self, dest: str) -> None:
        for parent in reversed(Path(dest).parents):
            if str(parent) not in self.made:
                self.made.add(str(parent))
                self.argv += ["--perms", "0755", "--dir", str(parent)]

    def mount(self, option: str, source: str | Path, dest: str) -> None:
        self.parents(dest)
        self.made.add(dest)
        self.argv += [option, str(source), dest]


def _system(args: _Args) -> None:
    """/usr and the top-level system folders as this host has them (merged /usr: links)."""
    args.mount("--ro-bind", "/usr", "/usr")
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args.argv += ["--symlink", os.readlink(path), name]
            args.made.add(name)
        elif path.is_dir():
            args.mount("--ro-bind", path, name)
    args.argv += ["--perms", "0755", "--dir", "/etc"]
    args.made.add("/etc")
    for name in ETC_FILES:  # never passwd, shadow or the host's other settings
        if Path(name).exists():
            args.mount("--ro-bind", Path(name).resolve(), name)


def python_dirs() -> list[Path]:
    """The Python runtime: the base installation, the virtual environment, the interpreter's
    real folder (each exactly, never a parent such as /root or /work)."""
    dirs: list[Path] = []
    for path in (Path(sys.base_prefix), Path(sys.prefix),
                 Path(os.path.realpath(sys.executable)).parent):
        path = path.resolve()
        if not any(path == d or d in path.parents for d in dirs):
            dirs.append(path)
    return dirs


def harness_dirs() -> list[Path]:
    """The `competition` and `models` package folders (the project is installed editable:
    only these two, never the repository root, whose data/ holds hidden labels)."""
    import competition
    import models

    return [Path(m.__file__).resolve().parent for m in (competition, models)
            if m.__file__ is not None]


def gpu_devices() -> list[Path]:
    dev = Path("/dev")
    found = sorted(dev.glob("nvidia*"))
    if (dev / "dri").is_dir():
        found.append(dev / "dri")
    return found


def sandbox_env() -> dict[str, str]:
    """SANDBOX_ENV plus PYTHONPATH: the harness packages' parent folders, in which the
    sandbox sees nothing but the packages (an editable install's finder points at the
    repository, which is not there)."""
    parents = list(dict.fromkeys(str(d.parent) for d in harness_dirs()))
    return {**SANDBOX_ENV, "PYTHONPATH": ":".join(parents)}


def sandbox_argv(inner_argv: list[str], *, ro_binds: list[tuple[Path, str]],
                 rw_binds: list[tuple[Path, str]], tmpfs_size_mb: int,
                 uid: int | None = None, seccomp_fd: int | None = None) -> list[str]:
    """The bwrap command running `inner_argv` confined. `uid`: in root mode (`root_mode`),
    the unprivileged uid setpriv switches to inside; None runs bwrap unprivileged (its caller
    is then that uid already). Binds are (host path, path inside). `seccomp_fd`: an fd (passed
    to bwrap) holding `seccomp.program()`, loaded before the inner command starts."""
    bwrap = bwrap_path() or "bwrap"
    as_root = uid is not None
    args = _Args()
    args.argv = [bwrap, *_namespaces(as_root), "--die-with-parent", "--new-session",
                 "--clearenv"]
    for key, value in sandbox_env().items():
        args.argv += ["--setenv", key, value]
    _system(args)
    args.argv += ["--proc", "/proc", "--dev", "/dev"]
    args.made.update({"/proc", "/dev"})
    args.argv += ["--perms", "1777", "--size", str(tmpfs_size_mb << 20), "--tmpfs", "/tmp"]
    args.made.add("/tmp")
    for path in [*python_dirs(), *harness_dirs()]:
        args.mount("--ro-bind", path, str(path))
    for device in gpu_devices():
        args.argv += ["--dev-bind", str(device), str(device)]
    for source, dest in ro_binds:
        args.mount("--ro-bind", source, dest)
    for source, dest in rw_binds:
        args.mount("--bind", source, dest)
    # The root (a tmpfs bwrap made) read-only: only /tmp and the rw binds can be written.
    args.argv += ["--remount-ro", "/", "--chdir", "/tmp"]
    if seccomp_fd is not None:
        args.argv += ["--seccomp", str(seccomp_fd)]
    return [*args.argv, *(_drop_to(uid) if uid is not None else []), *inner_argv]


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when bubblewrap can run a sandbox here, else a sentence saying why (asked once
    per process: a trial sandbox running `true`)."""
    if bwrap_path() is None:
        return "bubblewrap (bwrap) is not installed; install Debian's bubblewrap package"
    from competition.sandbox import uids

    try:
        with uids.lease() as uid:
            as_root = root_mode()
            argv = sandbox_argv(["true"], ro_binds=[], rw_binds=[], tmpfs_size_mb=1,
                                uid=uid if as_root else None)
            done = subprocess.run(argv, env=SANDBOX_ENV, capture_output=True, text=True,
                                  timeout=TRIAL_TIMEOUT_S, stdin=subprocess.DEVNULL,
                                  **uids.drop_kwargs(uid, as_root))
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap cannot start a sandbox here: {e}"
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit code {done.returncode}"
        return (f"bubblewrap cannot start a sandbox here ({detail}); it needs user "
                "namespaces (kernel.unprivileged_userns_clone=1) or root with CAP_SYS_ADMIN")
    return None
