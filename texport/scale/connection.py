"""Connecting to Ray: `connect(ADDRESS)` for the block of a run, and the checks that make a wrong address
one line within seconds instead of Ray's minutes of retries.

ADDRESS is anything `ray.init` takes (`auto`, `HOST:PORT`, `ray://HOST:PORT`) or `local:N`, a private
cluster of N workers on this machine for the run (on 127.0.0.1 only, no dashboard, no usage
statistics), shut down after it. A process already connected (a caller's own `ray.init`) is used as
it is. Ray itself is optional (`pip install 'texport[ray]'`): it is imported only here, in functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Iterator

from texport.errors import TexportError

LOCAL = "local:"
CLIENT = "ray://"
PROBE_SECONDS = 10  # a cluster's port that does not answer within this is one error, not Ray's minutes of retries
BOOTSTRAP_FILE = "/tmp/ray/ray_current_cluster"  # where a node started by `ray start` leaves its address ("auto")


def import_ray():
    """The ray module, or a one-line error that says how to get it."""
    try:
        import ray
    except ImportError:
        raise TexportError("--ray needs Ray: pip install 'texport[ray]'") from None
    return ray


@dataclass(frozen=True)
class Cluster:
    address: str  # as given
    cpus: int  # the cluster's CPUs when the run started
    local: bool  # a private cluster started for this run


@contextlib.contextmanager
def _local_environment():
    """What a private cluster's processes inherit: no usage statistics, every server on the loopback
    address (Ray otherwise binds its node to the machine's outward address). Ray's own default, token
    authentication, stays, without its notice on stderr."""

    saved = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read as "single-node, loopback only"
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:  # read when ray is imported: set it too for a driver that imported ray already
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    was = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if was is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        notice.setLevel(level)
        if was is not None:
            ray_constants.ENABLE_RAY_CLUSTER = was
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sigterm_handler():
    """The SIGTERM handler now, or None off the main thread (where handlers cannot be set)."""
    return signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None


def _restore_sigterm(saved, only_callable: bool) -> None:
    """ray.init installs its own SIGTERM handler (exit 1, a stack dump on stderr, the private cluster
    stopped). A program's own handler is put back after ray.init: texport's turns SIGTERM into an
    interrupt, so a run ends as on Ctrl-C (no partial output, the cluster shut down, exit 143). Any
    earlier handler, the default included, is put back after ray.shutdown."""

    if saved is not None and (callable(saved) or not only_callable):
        signal.signal(signal.SIGTERM, saved)


@contextlib.contextmanager
def connect(address: str, threads: int = 1) -> Iterator[Cluster]:
    """Connected to ADDRESS for the block (see the module's docstring); a private `local:N` cluster has
    N x threads CPUs and is shut down after the block."""
    ray = import_ray()
    if threads < 1:
        raise TexportError(f"threads per Ray worker must be at least 1, got {threads}")
    local = address.startswith(LOCAL)
    if local:
        try:
            workers = int(address[len(LOCAL):])
            if workers < 1:
                raise ValueError
        except ValueError:
            raise TexportError(f"--ray local:N needs a number of workers N >= 1, got {address!r}") from None
    if ray.is_initialized():  # the caller's connection: used, left as it is
        yield Cluster(address, int(ray.cluster_resources().get("CPU", 0)), False)
        return
    saved = _sigterm_handler()
    try:
        if local:
            with _local_environment():
                ray.init(num_cpus=workers * threads, include_dashboard=False, _node_ip_address="127.0.0.1",
                         configure_logging=False, log_to_driver=False)
        else:
            check_reachable(address)
            try:
                ray.init(address=address, configure_logging=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise TexportError(f"cannot connect to the Ray cluster at {address!r}: {' '.join(str(exc).split())}") from None
    finally:
        _restore_sigterm(saved, only_callable=True)
    try:
        yield Cluster(address, int(ray.cluster_resources().get("CPU", 0)), local)
    finally:
        ray.shutdown()
        _restore_sigterm(saved, only_callable=False)


def check_reachable(address: str) -> None:
    """A one-line error, within PROBE_SECONDS, if nothing answers at the cluster's address: `HOST:PORT`
    (a node's GCS), `ray://HOST:PORT` (a Ray Client server) or `auto` (RAY_ADDRESS, else the address a
    local `ray start` left in BOOTSTRAP_FILE; with neither, ray.init says so at once itself). Left
    alone, ray.init retries a silent address for minutes."""
    target = address
    if address in ("auto", ""):
        target = os.environ.get("RAY_ADDRESS", "")
        if not target and os.path.isfile(BOOTSTRAP_FILE):
            with open(BOOTSTRAP_FILE) as file:
                target = file.read().strip()
        if not target or target == "auto":
            return
    host, _, port = target.removeprefix(CLIENT).rpartition(":")
    if not host or not port.isdigit():
        raise TexportError(f"cannot connect to the Ray cluster at {address!r}: give auto, HOST:PORT, ray://HOST:PORT or local:N")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        where = f" ({target}, from {'RAY_ADDRESS' if os.environ.get('RAY_ADDRESS') else BOOTSTRAP_FILE})" if target != address else ""
        raise TexportError(f"cannot connect to the Ray cluster at {address!r}{where}: {reason} at {host}:{port} "
                           f"within {PROBE_SECONDS} s") from None
