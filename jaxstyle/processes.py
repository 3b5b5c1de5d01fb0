"""Many processes, one program: a batch split over the devices of several hosts (``jax.distributed``).

Every process runs the same command. ``start_processes`` joins them (once, before JAX
does anything else); the run's mesh then spans every process's devices, and each process
owns a contiguous share of the batch (``process_share``): it loads those items, computes
their targets and writes their outputs. The compiled program is one SPMD program over the
global arrays; the host loop reads its few per-chunk numbers gathered from all processes,
so every process takes the same decisions (early stops, NaN stops) at the same chunk.

If a process dies, the others would block in a collective: a watchdog thread asks the
coordinator which processes are alive, and on a loss prints one line and ends the process
(exit code of ``ProcessError``) within the heartbeat timeout.
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import sys
import threading
import time
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import OptionError, ProcessError
from .sharding import run_mesh


class ProcessShare(NamedTuple):
    """This process's part of a K-item batch spread over several processes."""

    first: int  # the global index of its first item
    own: int  # how many of the K items it owns (0 when there are fewer items than batch rows)
    count: int  # K
    block: int  # its batch rows: the same on every process (its items, padded)

    @property
    def indices(self) -> range:
        """The batch indices of its own items."""
        return range(self.first, self.first + self.own)

    @property
    def members(self) -> range:
        """The items it computes: its own, or (when it owns none) a copy of the last, so that it holds rows."""
        return self.indices or range(self.count - 1, self.count)


def process_share(count: int, mesh: Mesh) -> ProcessShare:
    """Which of ``count`` items this process owns on ``mesh`` (its devices' rows of "batch")."""
    rows = mesh.shape["batch"]
    total = -(-count // rows) * rows
    index_map = NamedSharding(mesh, PartitionSpec("batch")).addressable_devices_indices_map((total,))
    starts = sorted({index[0].start or 0 for index in index_map.values()})
    stops = sorted({index[0].stop if index[0].stop is not None else total for index in index_map.values()})
    first, stop = starts[0], stops[-1]
    if any(b != a for a, b in zip(stops[:-1], starts[1:])):
        raise OptionError("this process's devices are not one block of the mesh's batch rows: give every process "
                          "the same number of devices")  # fmt: skip
    block = stop - first
    if total % block or total // block != jax.process_count():
        raise OptionError(f"the processes hold unequal shares of the batch ({block} of {total} rows here): give every "
                          "process the same number of devices")  # fmt: skip
    return ProcessShare(first, max(0, min(stop, count) - first), count, block)


def batch_share(count: int, devices, spatial_parts: int) -> ProcessShare | None:
    """This process's share of a ``count``-item batch on the run's mesh of ``devices``; None in a one-process run."""
    if jax.process_count() == 1:
        return None
    check_local_spatial_parts(spatial_parts)
    return process_share(count, run_mesh(devices if devices is not None else jax.devices(), spatial_parts))


def check_local_spatial_parts(spatial_parts: int) -> None:
    """An image's rows stay within one process: the parts must divide its device count."""
    local = jax.local_device_count()
    if jax.process_count() > 1 and local % spatial_parts:
        raise OptionError(f"spatial_parts {spatial_parts} does not divide this process's {local} devices: with several "
                          "processes each image stays within one, so choose a divisor of the devices per process")  # fmt: skip


def to_global(tree: Any, mesh: Mesh, specs: Any) -> Any:
    """This process's part of every leaf (its rows of "batch", whole replicated leaves) as global arrays."""
    from jax.experimental import multihost_utils

    # Through the host: a local leaf may itself be split over this process's devices (spatial targets).
    return multihost_utils.host_local_array_to_global_array(jax.tree.map(np.asarray, tree), mesh, specs)


def to_local(tree: Any, mesh: Mesh, specs: Any) -> Any:
    """The inverse of ``to_global``: this process's part of every global leaf, as arrays it can read."""
    from jax.experimental import multihost_utils

    return multihost_utils.global_array_to_host_local_array(tree, mesh, specs)


def gathered(array: jax.Array) -> np.ndarray:
    """The whole of a (global) array on every process: a collective, so every process calls it."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def check_coordinator(coordinator: str) -> str:
    match = _ADDRESS.match(coordinator or "")
    if coordinator != "auto" and (not match or not 1 <= int(match["port"]) <= 65535):
        raise OptionError(f"coordinator must be HOST:PORT (e.g. 10.0.0.1:12345) or 'auto', got {coordinator!r}")
    return coordinator


def start_processes(
    coordinator: str = "auto",
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = 120,
    heartbeat_timeout: int = 10,
) -> tuple[int, int]:
    """Join this process to a multi-process run; returns (process_id, num_processes).

    ``coordinator``: HOST:PORT of process 0, which hosts the coordination service (every
    process gives the same address), with ``num_processes`` and ``process_id``; or
    "auto": JAX finds them itself where the platform says (Cloud TPU VMs and pod slices,
    SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``...). Call it before anything else uses
    JAX. Raises ``ProcessError`` if the coordinator cannot be reached within ``timeout``
    seconds, or if the processes disagree on their count. Afterwards a process that stops
    answering for ``heartbeat_timeout`` seconds ends every other (one line on stderr).
    """
    check_coordinator(coordinator)
    if coordinator == "auto":
        if num_processes is not None or process_id is not None:
            raise OptionError("with the coordinator 'auto' JAX finds the process count and id itself; leave them out")
    else:
        if num_processes is None or process_id is None:
            raise OptionError("a coordinator address needs the process count and this process's id "
                              "(--num-processes N --process-id I)")  # fmt: skip
        if isinstance(num_processes, bool) or not isinstance(num_processes, (int, np.integer)) or num_processes < 1:
            raise OptionError(f"num_processes must be a whole number ≥ 1, got {num_processes!r}")
        if isinstance(process_id, bool) or not isinstance(process_id, (int, np.integer)) or not 0 <= process_id < num_processes:
            raise OptionError(f"process_id must be in 0..{num_processes - 1} for {num_processes} processes, got {process_id!r}")
    from jax._src import distributed

    if distributed.global_state.client is not None:
        raise OptionError("this process already joined a multi-process run: start_processes is called once")
    # A dead process must not leave the others in a collective for ever: the coordination
    # service keeps running without it, and the watchdog below ends them with a clear line.
    jax.config.update("jax_enable_recoverability", True)
    where = "the coordinator found by JAX" if coordinator == "auto" else f"the coordinator {coordinator}"
    advice = ("start every process with the same --coordinator and --num-processes, process 0 on the coordinator's "
              "host, and check that its port is reachable")  # fmt: skip
    if coordinator != "auto" and process_id == 0:
        _check_port_free(coordinator)
    # JAX ends the process (a C++ fatal error with a stack trace) when joining times out; a
    # timer a little earlier ends it with one line instead. JAX's own deadline is later.
    joined = threading.Event()

    def give_up():
        if not joined.wait(timeout):
            print(f"jaxstyle: error: could not join the run through {where} within {timeout:g} s: {advice}",
                  file=sys.stderr, flush=True)  # fmt: skip
            os._exit(ProcessError.exit_code)

    threading.Thread(target=give_up, name="jaxstyle-join-timeout", daemon=True).start()
    try:
        later = int(timeout) + 60
        if coordinator == "auto":
            jax.distributed.initialize(initialization_timeout=later, heartbeat_timeout_seconds=heartbeat_timeout)
        else:
            jax.distributed.initialize(coordinator, int(num_processes), int(process_id), initialization_timeout=later,
                                       heartbeat_timeout_seconds=heartbeat_timeout)  # fmt: skip
    except Exception as e:  # JAX's ValueError when "auto" finds no cluster, and runtime errors
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProcessError(f"could not join the run through {where} ({first_line}): {advice}") from None
    finally:
        joined.set()
    count, me = jax.process_count(), jax.process_index()
    if num_processes is not None and count != num_processes:
        raise ProcessError(f"this process was told {num_processes} processes but the run has {count}: give every process "
                           "the same --num-processes")  # fmt: skip
    _start_watchdog(count, me, heartbeat_timeout)
    atexit.register(stop_processes)
    return me, count


def _check_port_free(coordinator: str) -> None:
    """Process 0 serves the coordinator's port: refuse at once if something else holds it."""
    port = int(coordinator.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: a closed socket's wait is no use
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as e:
            raise ProcessError(f"process 0 serves the coordinator on port {port}, but it is in use here ({e.strerror}): "
                               "choose another port for --coordinator") from None  # fmt: skip


class _Watchdog:
    """Asks the coordinator every half second which processes are alive; on a loss, one line and the end."""

    def __init__(self, count: int, me: int, heartbeat_timeout: int):
        from jax._src import distributed

        self.client, self.count, self.me, self.heartbeat_timeout = distributed.global_state.client, count, me, heartbeat_timeout
        self.stop = threading.Event()
        threading.Thread(target=self.watch, name="jaxstyle-process-watchdog", daemon=True).start()

    def lost(self) -> str | None:
        """Which processes are gone, in words, or None if all answer."""
        try:
            alive = set(self.client.get_live_nodes(list(range(self.count))))
        except Exception:  # the coordinator itself is gone
            alive = set()
        missing = sorted(set(range(self.count)) - alive)
        if not missing:
            return None
        return "the coordinator (process 0)" if not alive else "process " + ", ".join(map(str, missing))

    def end(self, who: str) -> None:
        # On a line of its own: a progress bar may hold the current one.
        print(f"\njaxstyle: error: {who} of this {self.count}-process run stopped answering (heartbeat timeout "
              f"{self.heartbeat_timeout} s); process {self.me} stops too: outputs already written are whole, "
              "the others were not written", file=sys.stderr, flush=True)  # fmt: skip
        os._exit(ProcessError.exit_code)

    def watch(self) -> None:
        while not self.stop.wait(0.5):
            who = self.lost()
            if who and not self.stop.is_set():
                self.end(who)


_watchdog: _Watchdog | None = None


def _start_watchdog(count: int, me: int, heartbeat_timeout: int) -> None:
    global _watchdog
    _watchdog = _Watchdog(count, me, heartbeat_timeout)


def end_if_a_process_was_lost() -> None:
    """After an unexpected error in a multi-process run: if it came from a lost process (a
    collective broken off), wait for the coordinator to see it (the heartbeat timeout) and end
    with the watchdog's one line rather than the collective's traceback. Returns otherwise."""
    if _watchdog is None:
        return
    deadline = time.monotonic() + _watchdog.heartbeat_timeout + 5
    while time.monotonic() < deadline:
        who = _watchdog.lost()
        if who:
            _watchdog.end(who)
        time.sleep(0.25)


def stop_processes(timeout: float = 300) -> None:
    """Leave the multi-process run: wait (up to ``timeout`` s) for every process to get here,
    then disconnect. A process that fails leaves with ``timeout=0``: the others see it gone.
    While it waits the watchdog still ends it if another process dies."""
    global _watchdog
    from jax._src import distributed

    if distributed.global_state.client is None:
        return
    client, me, count = distributed.global_state.client, jax.process_index(), jax.process_count()
    if timeout > 0:
        try:
            client.wait_at_barrier("jaxstyle_done", int(timeout * 1000))
        except Exception:
            pass  # another process is gone: nothing left to wait for
    if _watchdog is not None:  # from here on processes leave on purpose
        _watchdog.stop.set()
        _watchdog = None
    if timeout > 0 and me == 0:  # process 0 hosts the coordination service: the others disconnect first
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if set(client.get_live_nodes(list(range(count)))) <= {0}:
                    break
            except Exception:
                break
            time.sleep(0.05)
    try:
        jax.distributed.shutdown()
    except Exception:
        pass
