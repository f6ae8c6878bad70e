"""Code submissions' sandbox: hostile entries end failed with the right cause, quickly, and
the host is unharmed; entry zips are unpacked without trusting them; an honest entry writes
the same file as `competition run`."""

from __future__ import annotations

import ast
import errno
import os
import shutil
import socket
import stat
import struct
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import psutil
import pytest
import yaml

from competition.errors import CompetitionError, SubmissionError
from competition.sandbox import bwrap, entry_run, seccomp
from competition.sandbox.bwrap import unavailable_reason
from competition.sandbox.limits import CodeLimits
from competition.sandbox.process import SandboxResult
from competition.sandbox.unpack import is_entry_zip, unpack_entry
from tests.conftest import REPO

reason = unavailable_reason()
needs_bwrap = pytest.mark.skipif(reason is not None, reason=f"bubblewrap: {reason}")

LIMITS = CodeLimits(wall_seconds=20, cpu_seconds=20, memory_mb=512, processes=32, disk_mb=32,
                    log_kb=16)
SLACK_S = 30  # a limit's run ends within the limit and this


def sandboxed(tmp_path: Path, code: str, limits: CodeLimits = LIMITS,
              ro_binds: list[tuple[Path, str]] | None = None) -> SandboxResult:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    start = time.monotonic()
    result = entry_run.run_sandboxed([sys.executable, "-c", textwrap.dedent(code)],
                                     ro_binds=ro_binds or [], out_dir=out, limits=limits)
    assert time.monotonic() - start < limits.wall_seconds + SLACK_S
    return result


def job_processes() -> list[psutil.Process]:
    """Processes of the sandbox uids still running on the host."""
    found = []
    for p in psutil.process_iter(["uids"]):
        try:
            if 61000 <= p.info["uids"].real < 62000:
                found.append(p)
        except (psutil.Error, TypeError):
            pass
    return found


# --- the sandbox's view and network -------------------------------------------------------

@needs_bwrap
def test_no_network(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    for host, p in (("127.0.0.1", port), ("10.255.255.1", 80)):
        result = sandboxed(tmp_path, f"""
            import socket
            socket.create_connection(({host!r}, {p}), timeout=3)
            print("connected")""")
        assert not result.ok and result.cause == "exit code 1", result
        assert "connected" not in result.stdout_tail
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


@needs_bwrap
def test_hidden_files_and_the_environment_are_out_of_sight(tmp_path, monkeypatch):
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("COMPETITION_SECRET_CANARY", canary)
    public = tmp_path / "comp" / "public"
    public.mkdir(parents=True)
    (public / "train.csv").write_text("id\n1\n")
    (tmp_path / "comp" / "private").mkdir()
    solution = tmp_path / "comp" / "private" / "solution.csv"
    solution.write_text(canary)
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.txt").write_text(canary)
    paths = [solution, other / "secret.txt", "/etc/shadow", "/etc/passwd", "/root/.bashrc",
             REPO / "data", "/work/main/data", "/proc/1/environ", "/proc/self/environ",
             "/data/public/../private/solution.csv"]
    result = sandboxed(tmp_path, f"""
        import os
        for path in {[str(p) for p in paths]!r}:
            try:
                print(path, "visible", os.path.exists(path), open(path, "rb").read()[:200])
            except OSError as e:
                print(path, "refused", type(e).__name__)
        print("root", os.listdir("/root"))
        print("top", sorted(os.listdir("/")))
        print("public", os.listdir("/data/public"))""",
                       ro_binds=[(public, "/data/public")])
    assert result.ok, result
    text = result.stdout_tail + result.stderr_tail
    assert canary not in text
    for path in paths:
        if path != "/proc/self/environ":  # its own: the fixed environment, canary-free
            assert f"{path} refused" in text, text
    assert "root ['.pyenv']" in text or "root []" in text or "/root" not in sys.base_prefix
    assert "public ['train.csv']" in text
    # The top level holds the system folders, the sandbox's own, and the first folder of each
    # bound path (only the bound parts of them): nothing else of the host (/home, /opt, /var).
    top = set(ast.literal_eval(text.split("\ntop ", 1)[1].split("\n", 1)[0]))
    bound = {Path(p).parts[1] for p in [*bwrap.python_dirs(), *bwrap.harness_dirs(), "/data"]}
    made = {"usr", "etc", "dev", "proc", "tmp", "out",
            *(Path(d).name for d in bwrap.SYSTEM_DIRS)}
    assert bound <= top and top <= bound | made, top


# --- limits -------------------------------------------------------------------------------

@needs_bwrap
def test_fork_bomb_ends_and_leaves_nothing(tmp_path):
    before = len(psutil.pids())
    result = sandboxed(tmp_path, """
        import os
        while True:
            os.fork()""", CodeLimits(wall_seconds=10, cpu_seconds=20, memory_mb=256,
                                     processes=16, disk_mb=8, log_kb=16))
    assert not result.ok
    assert result.cause == "process limit", result
    assert job_processes() == []
    assert len(psutil.pids()) < before + 10


@needs_bwrap
@pytest.mark.parametrize("allocate", ["bytearray(20 * 2**30)",
                                      "import numpy; numpy.ones(20 * 2**30 // 8)"])
def test_memory_limit(tmp_path, allocate):
    limits = CodeLimits(wall_seconds=20, cpu_seconds=20, memory_mb=256, processes=16,
                        disk_mb=8, log_kb=16)
    result = sandboxed(tmp_path, allocate, limits)
    assert result.cause == "memory limit", result
    assert "256 MB" in (result.message or "")
    assert result.peak_memory_mb <= 256 + 16


@needs_bwrap
def test_wall_time_limit(tmp_path):
    limits = CodeLimits(wall_seconds=2, cpu_seconds=20, memory_mb=256, processes=16,
                        disk_mb=8, log_kb=16)
    result = sandboxed(tmp_path, "import time; time.sleep(10**6)", limits)
    assert result.cause == "time limit", result
    assert "2 s" in (result.message or "") and 2 <= result.wall_seconds < 2 + SLACK_S


@needs_bwrap
def test_cpu_time_limit(tmp_path):
    limits = CodeLimits(wall_seconds=30, cpu_seconds=2, memory_mb=256, processes=16,
                        disk_mb=8, log_kb=16)
    result = sandboxed(tmp_path, "while True: pass", limits)
    assert result.cause == "CPU time limit", result
    assert result.cpu_seconds >= 1.5 and result.wall_seconds < 2 + SLACK_S


@needs_bwrap
def test_log_limit(tmp_path):
    result = sandboxed(tmp_path, """
        import sys
        block = b"x" * 2**20
        for _ in range(1024):  # 1 GB
            sys.stdout.buffer.write(block)""")
    assert result.cause == "log limit", result
    assert len(result.stdout_tail.encode()) <= LIMITS.log_kb * 1024
    assert result.wall_seconds < 10


@needs_bwrap
def test_background_process_does_not_survive(tmp_path):
    code = """
        import subprocess
        subprocess.Popen(["sleep", "987654"], start_new_session=True)"""

    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] == ["sleep", "987654"]]

    result = sandboxed(tmp_path, code)
    assert result.ok, result
    assert sleepers() == []
    # The pid namespace alone does it: bwrap (its pid 1) ending kills every process inside,
    # with no sweep of ours (a plain subprocess.run of the same command line).
    argv = bwrap.sandbox_argv([sys.executable, "-c", textwrap.dedent(code)], ro_binds=[],
                              rw_binds=[], tmpfs_size_mb=8)
    import subprocess

    subprocess.run(argv, env=bwrap.SANDBOX_ENV, check=True, timeout=30)
    time.sleep(0.2)
    assert sleepers() == []


@needs_bwrap
def test_writes_outside_out_fail(tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "a.csv").write_text("a\n")
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "entry.py").write_text("")
    name = f"sandbox-{uuid.uuid4().hex}"
    result = sandboxed(tmp_path, f"""
        import sys
        for path in ["/data/public/x", "/data/public/a.csv", "/entry/x", "/x", "/usr/x",
                     "/etc/x"]:
            try:
                open(path, "a").write("x")
                print("wrote", path)
            except OSError as e:
                print("refused", path, type(e).__name__)
        open("/tmp/{name}", "w").write("private tmp")
        open("/out/result.txt", "w").write("ok")
        sys.exit(3)""", ro_binds=[(public, "/data/public"), (entry, "/entry")])
    assert result.cause == "exit code 3"
    assert "wrote" not in result.stdout_tail and result.stdout_tail.count("refused") == 6
    assert sorted(os.listdir(public)) == ["a.csv"] and (public / "a.csv").read_text() == "a\n"
    assert os.listdir(entry) == ["entry.py"]
    assert not Path("/tmp", name).exists()
    assert (tmp_path / "out" / "result.txt").read_text() == "ok"


@needs_bwrap
@pytest.mark.parametrize("how", ["one big file", "many files"])
def test_disk_limit(tmp_path, how):
    limits = CodeLimits(wall_seconds=20, cpu_seconds=20, memory_mb=256, processes=16,
                        disk_mb=8, log_kb=16)
    code = ("open('/out/big', 'wb').write(b'x' * 20 * 2**20)" if how == "one big file" else
            "import time\nfor k in range(40):\n    open(f'/out/{k}', 'wb').write(b'x' * 2**19)"
            "\ntime.sleep(10)")
    result = sandboxed(tmp_path, code, limits)
    assert result.cause == "disk limit", result


@needs_bwrap
def test_honest_script(tmp_path):
    result = sandboxed(tmp_path, "open('/out/submission.csv', 'w').write('id\\n'); "
                                 "print('done')")
    assert result.ok and result.cause is None and result.exit_code == 0, result
    assert result.stdout_tail == "done\n"
    assert (tmp_path / "out" / "submission.csv").read_text() == "id\n"


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap), "none"])
def test_hidden_inputs_appear_in_the_public_layout(tmp_path, mode):
    public = tmp_path / "public"
    (public / "stage1").mkdir(parents=True)
    (public / "stage1" / "train.csv").write_text("public")
    (public / "test").mkdir()
    (public / "test" / "placeholder").write_text("public")
    private = tmp_path / "private"
    for name in ("test", "stage2"):
        (private / name).mkdir(parents=True)
        (private / name / "x.png").write_text("hidden")
    views = entry_run.public_view(public, {"test": private / "test",
                                          "stage1/stage2": private / "stage2"})
    assert views == [(private / "stage2", "/data/public/stage1/stage2"),
                     (public / "stage1" / "train.csv", "/data/public/stage1/train.csv"),
                     (private / "test", "/data/public/test")]
    listing = """
        import os, sys
        root = sys.argv[1] if len(sys.argv) > 1 else "/data/public"
        for folder, _, files in sorted(os.walk(root, followlinks=True)):
            for f in sorted(files):
                path = os.path.join(folder, f)
                print(os.path.relpath(path, root), open(path).read())"""
    if mode == "bwrap":
        result = sandboxed(tmp_path, listing, ro_binds=views)
    else:
        view = tmp_path / "view"
        for source, dest in views:
            entry_run._link(view, Path(dest).relative_to("/data/public"), source)
        import subprocess

        result = subprocess.run([sys.executable, "-c", textwrap.dedent(listing), str(view)],
                                capture_output=True, text=True, check=True)
        result.stdout_tail = result.stdout
    assert result.stdout_tail.split("\n")[:3] == ["stage1/train.csv public",
                                                  "stage1/stage2/x.png hidden",
                                                  "test/x.png hidden"]
    assert sorted(os.listdir(public / "stage1")) == ["train.csv"]


# --- bubblewrap's availability ------------------------------------------------------------

def test_unavailable_reason_without_bwrap(monkeypatch):
    monkeypatch.setattr(bwrap, "bwrap_path", lambda: None)
    assert "install Debian's bubblewrap" in bwrap.unavailable_reason.__wrapped__()


def test_never_runs_unconfined(tmp_path, monkeypatch):
    monkeypatch.setattr(bwrap, "unavailable_reason", lambda: "no user namespaces")
    with pytest.raises(CompetitionError, match="no user namespaces"):
        entry_run.run_entry(tmp_path, "nuclei", tmp_path, {}, tmp_path / "out", LIMITS)


# --- zips ---------------------------------------------------------------------------------

def make_zip(path: Path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


ENTRY = {"entry.py": b"def fit(*a, **k): pass\ndef predict(*a): pass\n"}


@pytest.mark.parametrize("members, modes, rule", [
    ({**ENTRY, "../evil": b"x"}, None, "'..'"),
    ({**ENTRY, "/etc/evil": b"x"}, None, "absolute"),
    ({**ENTRY, "C:/evil": b"x"}, None, "absolute"),
    ({**ENTRY, "a\\b": b"x"}, None, "backslash"),
    ({**ENTRY, "link": b"/etc/passwd"}, {"link": stat.S_IFLNK | 0o777}, "symlinks"),
    ({**ENTRY, "dev": b""}, {"dev": stat.S_IFCHR | 0o666}, "devices"),
    ({**ENTRY, "fifo": b""}, {"fifo": stat.S_IFIFO | 0o666}, "FIFOs"),
    ({"model.py": b""}, None, "no entry.py"),
    ({"a/entry.py": b"", "b/x": b""}, None, "no entry.py"),
    # red team: a folder name too long for the file system escaped as a bare OSError (the
    # job read as the harness's failure: uncounted, retryable); a file's was refused
    ({**ENTRY, "d" * 300 + "/x": b""}, None, "cannot be unpacked.*too long"),
])
def test_hostile_zips_refused(tmp_path, members, modes, rule):
    path = make_zip(tmp_path / "entry.zip", members, modes)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SubmissionError, match=rule):
        unpack_entry(path, dest, max_bytes=2**20)
    assert list(dest.iterdir()) == [] or rule == "no entry.py"


def test_duplicate_and_encrypted_members_refused(tmp_path):
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("entry.py", b"")
        zf.writestr("entry.py", b"again")
    (tmp_path / "d1").mkdir()
    with pytest.raises(SubmissionError, match="duplicate"):
        unpack_entry(path, tmp_path / "d1", max_bytes=2**20)
    path = make_zip(tmp_path / "enc.zip", ENTRY)
    data = bytearray(path.read_bytes())
    for offset, sig in ((0, b"PK\x03\x04"), (data.rfind(b"PK\x01\x02"), b"PK\x01\x02")):
        assert data[offset:offset + 4] == sig
        flag = 6 if sig == b"PK\x03\x04" else 8
        data[offset + flag] |= 1  # the "encrypted" bit, in both headers
    path.write_bytes(bytes(data))
    (tmp_path / "d2").mkdir()
    with pytest.raises(SubmissionError, match="encrypted"):
        unpack_entry(path, tmp_path / "d2", max_bytes=2**20)


def test_too_many_members_refused_before_extracting(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("entry.py", b"")
        for k in range(100_000):
            zf.writestr(f"f{k}", b"")
    dest = tmp_path / "dest"
    dest.mkdir()
    start = time.monotonic()
    with pytest.raises(SubmissionError, match="100,001 members"):
        unpack_entry(path, dest, max_bytes=2**20)
    assert list(dest.iterdir()) == [] and time.monotonic() - start < 2
    assert not is_entry_zip(path)


def test_zip_bomb_stops_at_the_budget(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("entry.py", b"")
        with zf.open("zeros", "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(256):
                member.write(block)
    assert path.stat().st_size < 2**20
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SubmissionError, match="larger than allowed.*zeros|zeros.*larger"):
        unpack_entry(path, dest, max_bytes=16 * 2**20)
    assert (dest / "zeros").stat().st_size <= 16 * 2**20


def test_not_a_zip(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "d").mkdir()
    with pytest.raises(SubmissionError, match="not a zip"):
        unpack_entry(path, tmp_path / "d", max_bytes=2**20)
    assert not is_entry_zip(path)


def test_layouts_accepted_with_safe_modes(tmp_path):
    flat = make_zip(tmp_path / "flat.zip", {**ENTRY, "model/w.json": b"{}"},
                    {"entry.py": stat.S_IFREG | 0o4777})
    (tmp_path / "a").mkdir()
    folder = unpack_entry(flat, tmp_path / "a", max_bytes=2**20)
    assert folder == tmp_path / "a"
    assert stat.S_IMODE((folder / "entry.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "model").stat().st_mode) == 0o755
    top = make_zip(tmp_path / "top.zip", {"mine/entry.py": b"", "mine/config.yaml": b"",
                                          "__MACOSX/mine/._entry.py": b""})
    (tmp_path / "b").mkdir()
    assert unpack_entry(top, tmp_path / "b", max_bytes=2**20) == tmp_path / "b" / "mine"
    assert not (tmp_path / "b" / "__MACOSX").exists()
    assert is_entry_zip(flat) and is_entry_zip(top)
    mri = make_zip(tmp_path / "mri.zip", {"case1.nii.gz": b"", "case2.nii.gz": b""})
    assert not is_entry_zip(mri)


# --- a real entry on a prepared competition -----------------------------------------------

@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    """A demo nuclei competition, the threshold entry with its smoke settings, and the file
    `competition run` writes with them."""
    from competition.training.run import run
    from tests.conftest import prepare_with_store

    root = tmp_path_factory.mktemp("sandbox-nuclei")
    comp = prepare_with_store("demo-nuclei", root / "comp", seed=0)
    entry = root / "threshold"
    shutil.copytree(REPO / "submissions" / "threshold", entry)
    config = yaml.safe_load((entry / "config.yaml").read_text())
    for task, settings in yaml.safe_load((entry / "smoke.yaml").read_text()).items():
        config[task].update(settings)
    (entry / "config.yaml").write_text(yaml.safe_dump(config))
    (entry / "smoke.yaml").unlink()
    record = run(comp, entry, submit=False)
    # The test inputs as a private folder, the public one without them.
    public = root / "public"
    shutil.copytree(comp / "public", public, ignore=shutil.ignore_patterns("test"))
    hidden = root / "private" / "test"
    shutil.copytree(comp / "public" / "test", hidden)
    return entry, public, {"test": hidden}, Path(record["submission"]).read_bytes()


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap), "none"])
def test_run_entry_writes_what_competition_run_writes(tmp_path, nuclei, mode):
    entry, public, hidden, expected = nuclei
    pids = []
    limits = CodeLimits(wall_seconds=120, cpu_seconds=240, memory_mb=4096, processes=64,
                        disk_mb=64, log_kb=64)
    result, path = entry_run.run_entry(entry, "nuclei", public, hidden, tmp_path / "out",
                                       limits, sandbox=mode, started=pids.append)
    assert result.ok, result
    assert path == tmp_path / "out" / "submission.csv" and path.read_bytes() == expected
    assert len(pids) == 1 and not psutil.pid_exists(pids[0])
    assert sorted(os.listdir(public)) == sorted(os.listdir(public))  # untouched
    assert "test" not in os.listdir(public)


@needs_bwrap
def test_run_entry_failure_is_reported(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "config.yaml").write_text("tasks: [nuclei]\n")
    (entry / "entry.py").write_text("def fit(task, train, config):\n    raise ValueError('no')\n"
                                    "def predict(*a):\n    pass\n")
    public = tmp_path / "public"
    public.mkdir()
    result, path = entry_run.run_entry(entry, "nuclei", public, {}, tmp_path / "out", LIMITS)
    assert result.cause == "exit code 1" and path is None
    assert "Traceback" in result.stderr_tail


def test_the_sandbox_runs_where_it_is_required():
    """CI installs bubblewrap and sets COMPETITION_REQUIRE_SANDBOX: there the sandboxed tests
    must run, not skip."""
    if reason is not None and os.environ.get("COMPETITION_REQUIRE_SANDBOX"):
        pytest.fail(f"bubblewrap cannot run a sandbox here: {reason}")
    if reason is not None:
        pytest.skip(f"bubblewrap: {reason}")
    assert unavailable_reason() is None


@needs_bwrap
@pytest.mark.skipif(seccomp.program() is None, reason="no seccomp filter for this machine")
def test_memory_and_disk_the_watchdog_cannot_see_are_refused(tmp_path):
    """Red team: memfd pages and System V segments count in no process's resident memory
    (1.25 GiB held under a 512 MB limit), and fallocate reserved 3 GiB of disk in 4 ms under
    a 32 MB limit, between two polls. The seccomp filter refuses all three; an honest
    posix_fallocate falls back to writing (seen by the poll)."""
    result = sandboxed(tmp_path, """
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            os.memfd_create("m")
            print("memfd allowed")
        except OSError as e:
            print("memfd refused", errno.errorcode[e.errno])
        fd = os.open("/out/f", os.O_CREAT | os.O_WRONLY)
        if libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(4096)) == 0:
            print("fallocate allowed")
        else:
            print("fallocate refused", errno.errorcode[ctypes.get_errno()])
        for name, call in [("shmget", lambda: libc.shmget(0, 1 << 20, 0o1600)),
                           ("msgget", lambda: libc.msgget(0, 0o1600))]:
            print(name, "allowed" if call() >= 0 else "refused")
        fd = os.open("/out/g", os.O_CREAT | os.O_WRONLY)
        os.posix_fallocate(fd, 0, 1 << 16)
        print("posix_fallocate", os.fstat(fd).st_size)""")
    assert result.ok, result
    assert result.stdout_tail.split("\n")[:5] == [
        "memfd refused ENOSYS", f"fallocate refused {errno.errorcode[errno.EOPNOTSUPP]}",
        "shmget refused",
        "msgget refused", f"posix_fallocate {1 << 16}"]


def test_the_seccomp_filter_refuses_other_abis():
    code = seccomp.program("x86_64")
    assert code is not None and len(code) % 8 == 0
    # the arch check's false branch lands on the last instruction: ERRNO(ENOSYS)
    _, _, jf, _ = struct.unpack("=HBBI", code[8:16])
    assert 2 + jf == len(code) // 8 - 1
    assert struct.unpack("=HBBI", code[-8:])[3] == 0x00050000 | errno.ENOSYS
    assert seccomp.program("sparc") is None
