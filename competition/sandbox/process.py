"""Running a command under a code submission's limits, watched until nothing of it is left.

No cgroups (not portable here): the kernel's rlimits bound each process (address space, CPU,
file size, the uid's process count) and a watchdog thread bounds the tree as a whole: summed
resident memory, summed CPU time, wall time, the output folder's size, the log's length. A
limit hit kills the process group and every descendant; the job's dedicated uid (see
`uids`) is swept afterwards, so a process that left the tree dies too.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from competition.sandbox.limits import CodeLimits

log = logging.getLogger(__name__)

MIB = 1024 * 1024
POLL_S = 0.1
DISK_POLL_S = 0.5  # walking the output folder costs more
CPU_GRACE_S = 5  # between SIGXCPU and the kernel's SIGKILL
LOG_FACTOR = 64  # a stream longer than this many tails ends the run
READ_CHUNK = 1 << 16
READER_JOIN_S = 5.0
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: never dlopen in a forked child
PR_SET_PDEATHSIG = 1


@dataclass
class SandboxResult:
    ok: bool  # exit 0 and no limit hit
    cause: str | None  # None when ok; a short label ("time limit", "exit code 1", ...)
    message: str | None  # a sentence for the participant
    exit_code: int | None
    wall_seconds: float
    cpu_seconds: float
    peak_memory_mb: float
    stdout_tail: str
    stderr_tail: str


def _messages(limits: CodeLimits) -> dict[str, str]:
    return {
        "time limit": f"the entry ran for more than {limits.wall_seconds} s (this "
                      "competition's wall-time limit) and was stopped",
        "CPU time limit": f"the entry used more than {limits.cpu_seconds} s of CPU time "
                          "(this competition's limit) and was stopped",
        "memory limit": f"the entry needed more than {limits.memory_mb} MB of memory (this "
                        "competition's limit) and was stopped",
        "process limit": f"the entry tried to run more than {limits.processes} processes "
                         "at once (this competition's limit) and failed",
        "log limit": f"the entry printed more than {limits.log_kb * LOG_FACTOR} KB to one "
                     "output stream (this competition's log limit) and was stopped",
        "disk limit": f"the entry wrote more than {limits.disk_mb} MB (this competition's "
                      "disk limit) and was stopped",
    }


def _preexec(limits: CodeLimits, nproc: int) -> Callable[[], None]:
    """In the child, before exec (after Popen switched the uid): the kernel's limits, and
    death with this thread (PR_SET_PDEATHSIG)."""
    memory = limits.memory_mb * MIB
    fsize = limits.disk_mb * MIB
    cpu = limits.cpu_seconds

    def child() -> None:
        for which, soft, hard in ((resource.RLIMIT_CORE, 0, 0),
                                  (resource.RLIMIT_AS, memory, memory),
                                  (resource.RLIMIT_CPU, cpu, cpu + CPU_GRACE_S),
                                  (resource.RLIMIT_FSIZE, fsize, fsize),
                                  (resource.RLIMIT_NPROC, nproc, nproc)):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(which, (soft, hard))
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return child


def _nproc(limits: CodeLimits, uid: int | None) -> int:
    """RLIMIT_NPROC counts all of a uid's processes: a dedicated uid gets the limit itself;
    this process's own uid (not root) what it already runs plus the limit."""
    if uid is not None:
        return limits.processes
    mine = os.getuid()
    running = 0
    for p in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error, TypeError):
            running += p.info["uids"].real == mine
    return running + limits.processes


class _Tail:
    """The last `limit` bytes of a stream, and how many bytes it had in all."""

    def __init__(self, limit: int) -> None:
        self.limit, self.total, self.size = limit, 0, 0
        self.chunks: collections.deque[bytes] = collections.deque()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.chunks.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        return b"".join(self.chunks)[-self.limit:].decode("utf-8", errors="replace")


def _folder_bytes(folder: Path) -> int:
    total = 0
    stack = [str(folder)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        total += max(st.st_size, st.st_blocks * 512)
    return total


class _Watch:
    """The watchdog's state: the tree's peak memory and CPU, and the limit that ended it."""

    def __init__(self, pid: int, limits: CodeLimits, out_dir: Path | None) -> None:
        self.pid, self.limits, self.out_dir = pid, limits, out_dir
        self.root = psutil.Process(pid)
        self.lock = threading.Lock()
        self.done = False  # the root is reaped: its pid may be reused, nothing is killed
        self.cause: str | None = None
        self.peak_rss = 0
        self.cpu = 0.0
        self.seen: dict[int, float] = {}  # pid -> create time of every process of the tree

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def kill(self, cause: str | None) -> None:
        with self.lock:
            if self.done:
                return
            if cause is not None and self.cause is None:
                self.cause = cause
                log.info("sandboxed process %d: %s; killing it", self.pid, cause)
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            for p in self.tree():
                with contextlib.suppress(psutil.Error):
                    p.kill()

    def sample(self) -> None:
        rss, cpu = 0, 0.0
        tree = self.tree()
        for p in tree:
            with contextlib.suppress(psutil.Error), p.oneshot():
                self.seen.setdefault(p.pid, p.create_time())
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
        self.peak_rss = max(self.peak_rss, rss)
        self.cpu = max(self.cpu, cpu)
        if rss > self.limits.memory_mb * MIB:
            self.kill("memory limit")
        elif cpu > self.limits.cpu_seconds:
            self.kill("CPU time limit")
        elif len(tree) > self.limits.processes + 2:  # + bwrap's two; RLIMIT_NPROC's backstop
            self.kill("process limit")

    def run(self, start: float) -> None:
        last_disk = 0.0
        while not self.done:
            self.sample()
            now = time.monotonic()
            if now - start > self.limits.wall_seconds:
                self.kill("time limit")
            if self.out_dir is not None and now - last_disk > DISK_POLL_S:
                last_disk = now
                if _folder_bytes(self.out_dir) > self.limits.disk_mb * MIB:
                    self.kill("disk limit")
            time.sleep(POLL_S)

    def read(self, fd: int, tail: _Tail) -> None:
        while chunk := os.read(fd, READ_CHUNK):
            tail.add(chunk)
            if tail.total > tail.limit * LOG_FACTOR:
                self.kill("log limit")


def _sweep(uid: int | None, seen: Mapping[int, float], pgid: int) -> None:
    """Kill whatever of the job still runs: its process group, every process of the tree
    seen (same pid and start time) and every process of its dedicated uid."""
    for _ in range(10):
        found = []
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
        for p in psutil.process_iter(["uids", "create_time", "status"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if p.info["status"] == psutil.STATUS_ZOMBIE:  # dead; its parent reaps it
                    continue
                ours = seen.get(p.pid) == p.info["create_time"]
                if ours or (uid not in (None, 0) and p.info["uids"].real == uid):
                    p.kill()
                    found.append(p)
        if not found:
            return
        psutil.wait_procs(found, timeout=1)
    log.warning("processes of sandboxed job (uid %s) survive SIGKILL", uid)


def _cause(code: int, signalled: int | None, cpu: float, limits: CodeLimits,
           stderr: str) -> str | None:
    if signalled is not None:
        if signalled == signal.SIGXCPU or (signalled == signal.SIGKILL
                                           and cpu >= limits.cpu_seconds):
            return "CPU time limit"
        if signalled == signal.SIGXFSZ:
            return "disk limit"
        return f"killed by signal {signal.Signals(signalled).name}"
    if code == 0:
        return None
    if "MemoryError" in stderr or "std::bad_alloc" in stderr:
        return "memory limit"
    if "File too large" in stderr or "No space left on device" in stderr:
        return "disk limit"
    # fork() or a new thread refused by RLIMIT_NPROC (EAGAIN)
    if "BlockingIOError: [Errno 11]" in stderr or "can't start new thread" in stderr:
        return "process limit"
    return f"exit code {code}"


def _signal_of(code: int, signal_exit_codes: bool) -> int | None:
    """The signal that ended the command: a negative return code, or (where the command is a
    wrapper such as bwrap, which exits with 128 + N for a child killed by signal N) 129-159."""
    if code < 0:
        return -code
    if signal_exit_codes and 128 < code < 160:
        with contextlib.suppress(ValueError):
            return signal.Signals(code - 128).value
    return None


@contextlib.contextmanager
def _threads(*threads: threading.Thread) -> Iterator[None]:
    for t in threads:
        t.start()
    yield
    for t in threads:
        t.join(READER_JOIN_S)


def run(argv: list[str], *, limits: CodeLimits, env: Mapping[str, str],
        out_dir: Path | None = None, uid: int | None = None, switch_user: bool = False,
        signal_exit_codes: bool = False, pass_fds: tuple[int, ...] = (),
        started: Callable[[int], None] | None = None) -> SandboxResult:
    """Run `argv` under `limits` and wait for it. `uid`: the dedicated uid the job's
    processes run as (None: this process's own, not root); `switch_user`: Popen starts the
    command as `uid` (else the command drops to it itself, as the root-mode sandbox does).
    `out_dir` is handed to `uid` first and its size watched. Nothing of the job runs after
    this returns. `pass_fds`: fds the command inherits (bwrap's seccomp filter)."""
    if out_dir is not None and uid is not None:
        for folder, dirs, files in os.walk(out_dir):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, uid, uid, follow_symlinks=False)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env), start_new_session=True,
                            preexec_fn=_preexec(limits, _nproc(limits, uid)),
                            pass_fds=pass_fds,
                            user=uid if switch_user else None,
                            group=uid if switch_user else None,
                            extra_groups=[] if switch_user else None)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        watch = _Watch(proc.pid, limits, out_dir)
        if started is not None:
            started(proc.pid)
        tails = _Tail(limits.log_kb * 1024), _Tail(limits.log_kb * 1024)
        readers = [threading.Thread(target=watch.read, args=(s.fileno(), t), daemon=True)
                   for s, t in zip((proc.stdout, proc.stderr), tails, strict=True)]
        watcher = threading.Thread(target=watch.run, args=(start,), daemon=True)
        with _threads(*readers):
            watcher.start()
            _, status, usage = os.wait4(proc.pid, 0)
            with watch.lock:
                watch.done = True
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - start
            watcher.join()
            _sweep(uid, watch.seen, proc.pid)
    finally:
        if proc.returncode is None:  # an error of ours: the job must not outlive it
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    code = proc.returncode
    cpu = max(watch.cpu, usage.ru_utime + usage.ru_stime)
    stdout, stderr = tails[0].text(), tails[1].text()
    signalled = _signal_of(code, signal_exit_codes)
    cause = watch.cause or _cause(code, signalled, cpu, limits, stderr)
    message = _messages(limits).get(cause) if cause else None
    if cause is not None and message is None:
        message = f"the entry failed ({cause}); the end of its error output says why"
    return SandboxResult(ok=cause is None, cause=cause, message=message,
                         exit_code=None if signalled is not None and code < 0 else code,
                         wall_seconds=wall, cpu_seconds=cpu,
                         # The watchdog's samples only: ru_maxrss would count the forked
                         # launcher's copy of this (possibly large) process before its exec.
                         peak_memory_mb=watch.peak_rss / MIB,
                         stdout_tail=stdout, stderr_tail=stderr)
