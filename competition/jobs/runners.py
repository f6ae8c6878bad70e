"""Where jobs run: Dask distributed (a LocalCluster on this machine, or an existing scheduler
whose workers run on any host), or a pool of threads in this process (tests, small courses).
A runner returns futures with `done()`, `result()` and `exception()`."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from competition.errors import CompetitionError

log = logging.getLogger(__name__)
SCHEDULER_ENV = "COMPETITION_DASK_SCHEDULER"


DASK_PORT = 8786  # a scheduler address without a port means Dask's default
PROBE_SECONDS = 5.0  # for a TCP connection to the scheduler's port: on a LAN, milliseconds
CONNECT_SECONDS = 30  # for Dask's own handshake, once the port answers
SCHEDULER_FIX = ("check --scheduler (or COMPETITION_DASK_SCHEDULER) and that the scheduler "
                 "is running and reachable from here")


def check_reachable(address: str) -> None:
    """A CompetitionError naming `address` unless its port accepts a TCP connection: a
    wrong address is a configuration mistake, told in seconds (Dask's Client retries a
    refused port until its timeout, then raises a bare OSError)."""
    scheme, _, rest = address.rpartition("://")
    if scheme == "inproc":
        return
    parts = urlsplit(f"//{rest}")
    try:
        host, port = parts.hostname or "", parts.port or DASK_PORT
    except ValueError:  # a port that is not a number
        raise CompetitionError(f"the Dask scheduler {address} has no valid port; "
                               "give it as tls://HOST:8786") from None
    # A refused port is tried again until the deadline: a scheduler started beside the
    # portal (systemd, compose) may still be binding its port.
    deadline = time.monotonic() + PROBE_SECONDS
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host, port), timeout=max(left, 0.1)).close()
            return
        except TimeoutError:
            raise CompetitionError(f"the Dask scheduler {address} did not answer within "
                                   f"{PROBE_SECONDS:g} s; {SCHEDULER_FIX}") from None
        except ConnectionRefusedError as e:
            if left <= 0:
                raise CompetitionError(f"could not reach the Dask scheduler {address}: "
                                       f"{e.strerror or e}; {SCHEDULER_FIX}") from None
            time.sleep(min(0.25, left))
        except OSError as e:
            raise CompetitionError(f"could not reach the Dask scheduler {address}: "
                                   f"{e.strerror or e}; {SCHEDULER_FIX}") from None


class Runner(Protocol):
    def capacity(self) -> int:
        """How many jobs can run at once now."""

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any: ...

    def close(self) -> None: ...


class ThreadRunner:
    """Jobs in threads of this process (each job scores in a child process of its own)."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="scoring")

    def capacity(self) -> int:
        return self.workers

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class DaskRunner:
    """Jobs on a Dask cluster: the scheduler at `address` (workers started with `dask worker
    ADDRESS` on any host that has this package and read access to the competition's files),
    or a LocalCluster of `workers` processes with one thread each.

    Only holders of the cluster's credentials talk to it (see cluster_security): the
    LocalCluster speaks TLS with temporary credentials held in this process alone; a named
    scheduler must be `tls://` with `certs` (a folder made by `competition cluster-certs`,
    or Dask's own TLS configuration), or plain `tcp://` on loopback."""

    def __init__(self, address: str | None = None, workers: int | None = None,
                 certs: Path | None = None):
        import importlib

        import dask

        from competition.jobs import cluster_security

        # distributed has no type information: its objects are Any here.
        distributed: Any = importlib.import_module("distributed")
        Client, LocalCluster = distributed.Client, distributed.LocalCluster
        # A job whose worker dies is rerun on another (up to this many deaths), then fails.
        # Workers may be daemons, as Dask starts them: a job starts its scoring child anyway
        # (scorer_process.start_child).
        dask.config.set({"distributed.scheduler.allowed-failures": 3})
        address = address or os.environ.get(SCHEDULER_ENV) or None
        if certs is None and os.environ.get(cluster_security.CERTS_ENV):
            certs = Path(os.environ[cluster_security.CERTS_ENV])
        self.cluster: Any = None
        self.client: Any
        if address:
            security = cluster_security.client_security(certs)
            address = cluster_security.checked_address(address, security)
            check_reachable(address)
            try:
                self.client = Client(address, timeout=f"{CONNECT_SECONDS}s",
                                     security=security)
            except (OSError, TimeoutError) as e:  # e.g. a TLS handshake that never ends
                raise CompetitionError(f"could not connect to the Dask scheduler {address}: "
                                       f"{e}; {SCHEDULER_FIX}") from None
            if not address.startswith("tls://"):
                self._check_plain_cluster_is_local(cluster_security)
        else:
            # security=True: a fresh certificate authority in memory, for this cluster only.
            n = workers or len(os.sched_getaffinity(0))
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, host="127.0.0.1",
                                        security=True)
            self.client = Client(self.cluster, security=self.cluster.security)
        log.info("Dask scheduler %s with %d worker thread(s)", self.client.scheduler.address,
                 self.capacity())

    def _check_plain_cluster_is_local(self, cluster_security: Any) -> None:
        """A plain scheduler reached on loopback may still listen on every interface (Dask's
        default host): judge where it and its workers listen, not the address dialled."""
        info = self.client.scheduler_info()
        exposed = [a for a in [info.get("address", ""), *info.get("workers", {})]
                   if not cluster_security.is_loopback(urlsplit(a).hostname or "")]
        if exposed:
            self.client.close()
            raise CompetitionError(
                f"refusing the Dask cluster: it speaks plain TCP and listens on "
                f"{', '.join(sorted(exposed)[:3])}, off loopback, where anyone who reaches "
                "it can run code on it and read the hidden labels; start the scheduler and "
                "workers with --host 127.0.0.1, or use TLS (see docs/deploy.md)")

    def capacity(self) -> int:
        """Worker threads now (workers may join or leave at any time)."""
        return sum(self.client.nthreads().values())

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        # pure=False: the same job submitted again (a new claim) runs again.
        return self.client.submit(fn, *args, key=key, pure=False)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class SharedRunner:
    """One runner for the competitions of a course (one LocalCluster or thread pool, not one
    per competition). Each competition's dispatcher gets a `share`: what it sees as free is
    what the other competitions' jobs leave of the workers, so together they never claim
    more jobs than there are workers (a claimed job waiting in the runner's queue could not
    be passed by another team's: see Dispatcher._step). While other competitions have jobs
    waiting (`RunnerShare.wanting`), a share gets at most an even part of the workers: a
    competition with a long queue, whose dispatcher is woken the moment one of its jobs ends,
    would otherwise take every worker freed. Limits (daily limit, sizes) stay each
    competition's: they are checked before a job is queued."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._lock = threading.Lock()
        self._shares: list[RunnerShare] = []

    def share(self) -> RunnerShare:
        share = RunnerShare(self)
        with self._lock:
            self._shares.append(share)
        return share

    def busy_outside(self, share: RunnerShare) -> tuple[int, int]:
        """(jobs of the other shares not done, how many of those shares have jobs waiting)."""
        with self._lock:
            others = [other for other in self._shares if other is not share]
            return sum(o.busy() for o in others), sum(o.is_wanting() for o in others)

    def close(self) -> None:
        self.runner.close()


class RunnerShare:
    """One competition's view of a SharedRunner (see there); closing it closes nothing."""

    # How long a share's word that its jobs wait holds (its dispatcher says it again at every
    # poll, 0.5 s): a stopped dispatcher holds back nobody for long.
    WANTING_SECONDS = 5.0

    def __init__(self, shared: SharedRunner) -> None:
        self.shared = shared
        self._futures: list[Any] = []
        self._lock = threading.Lock()
        self._wanting_since: float | None = None

    def wanting(self, waiting: bool) -> None:
        """Whether this competition has jobs waiting for a worker now."""
        self._wanting_since = time.monotonic() if waiting else None

    def is_wanting(self) -> bool:
        since = self._wanting_since
        return since is not None and time.monotonic() - since < self.WANTING_SECONDS

    def busy(self) -> int:
        """Jobs of this share not done yet (the done ones are forgotten)."""
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            return len(self._futures)

    def capacity(self) -> int:
        total = self.shared.runner.capacity()
        busy, wanting = self.shared.busy_outside(self)
        free_here = max(0, total - busy)
        if not wanting:
            return free_here
        return min(free_here, max(1, total // (wanting + 1)))  # an even part at most

    def submit(self, fn: Callable[..., Any], *args: Any, key: str) -> Any:
        future = self.shared.runner.submit(fn, *args, key=key)
        with self._lock:
            self._futures.append(future)
        return future

    def close(self) -> None:
        pass  # the course closes the shared runner once, after every dispatcher stopped
