"""Many processes, one run (jax.distributed): two local processes on 127.0.0.1 with CPU collectives.

Each run is a pair of ``python -m jaxstyle`` subprocesses with two forced host devices each,
so a 4-style batch puts two items on each process. The reference is the same command in
one process (this one).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from jaxstyle import OptionError
from jaxstyle.cli import main
from jaxstyle.processes import start_processes

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def batch(tmp_path, rng, random_weights_file):
    """A content, four styles, and the flags of a 4-style batch over them."""
    names = ["content", "s0", "s1", "s2", "s3"]
    for name in names:
        Image.fromarray((smooth_image(rng, 48, 64) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    flags = ["stylize", *(str(tmp_path / f"{n}.png") for n in names), "--batch", "--weights", str(random_weights_file),
             "--size", "64", "--style-weight", "1e4"]  # fmt: skip
    return flags


def launch(flags_of, count: int = 2, port: int | None = None) -> list[subprocess.Popen]:
    port = port or free_port()
    return [
        subprocess.Popen([sys.executable, "-m", "jaxstyle", *flags_of(i), "--coordinator", f"127.0.0.1:{port}"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(count)
    ]


def finish(processes, timeout: float = 300) -> list[tuple[int, str]]:
    return [(p.wait(timeout), p.communicate()[1]) for p in processes]


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), int)


def test_two_processes_split_a_batch_write_their_own_outputs_and_resume(batch, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # The reference: the same command in one process, one device; its pictures at 10 and 20 iterations.
    assert main([*batch, "--iterations", "20", "--save-every", "10", "-o", str(one / "r_{index}.png"), "--quiet"]) == 0
    common = lambda i: [*batch, "-o", str(two / "out_{index}.png"), "--num-processes", "2", "--process-id", str(i),  # noqa: E731
                        "--checkpoint", str(tmp_path / "ck.msgpack"), "--checkpoint-every", "10"]  # fmt: skip
    first = finish(launch(lambda i: [*common(i), "--iterations", "10"]))
    assert [code for code, _ in first] == [0, 0], first[0][1][-2000:] + first[1][1][-2000:]
    # Each process wrote its own two items, and kept its own checkpoint.
    assert "saved" in first[0][1] and "out_0.png" in first[0][1] and "out_2.png" not in first[0][1]
    assert "out_2.png" in first[1][1] and "out_3.png" in first[1][1] and "out_0.png" not in first[1][1]
    assert sorted(p.name for p in tmp_path.glob("ck*")) == ["ck.process-0-of-2.msgpack", "ck.process-1-of-2.msgpack"]
    # One progress bar: process 0's.
    assert "10/10" in first[0][1] and "10/10" not in first[1][1]
    # The stated tolerance: one level of 255 (it is 0 here: the same arithmetic, gathered).
    for k in range(4):
        assert np.abs(pixels(two / f"out_{k}.png") - pixels(one / f"r_{k}_0010.png")).max() <= 1
    resumed = finish(launch(lambda i: [*common(i), "--iterations", "20", "--resume", str(tmp_path / "ck.msgpack")]))
    assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-2000:] + resumed[1][1][-2000:]
    for k in range(4):  # resumed at 10, the picture of 20 iterations in one go
        assert np.abs(pixels(two / f"out_{k}.png") - pixels(one / f"r_{k}.png")).max() <= 1


def test_when_a_process_dies_the_other_stops_with_one_line_in_bounded_time(batch, tmp_path):
    out = tmp_path / "out_{index}.png"
    # Each image split over its process's two devices, too (the targets are computed split).
    processes = launch(lambda i: [*batch, "-o", str(out), "--iterations", "5000", "--num-processes", "2", "--spatial-parts",
                                  "2", "--process-id", str(i), "--checkpoint", str(tmp_path / "ck.msgpack"),
                                  "--checkpoint-every", "10"])  # fmt: skip
    started = time.monotonic()
    while not (tmp_path / "ck.process-1-of-2.msgpack").exists():  # both are iterating
        assert time.monotonic() - started < 240 and all(p.poll() is None for p in processes), finish(processes, 5)
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code, err = finish(processes[:1], timeout=60)[0]
    assert time.monotonic() - killed < 30  # the heartbeat timeout (10 s) and the watchdog's poll
    assert code == 8
    errors = [line for line in err.splitlines() if line.startswith("jaxstyle: error")]
    assert len(errors) == 1 and "process 1 of this 2-process run stopped answering" in errors[0]
    assert not list(tmp_path.glob("out_*.png"))  # nothing half-done was written


def test_a_coordinator_nobody_serves_or_a_wrong_process_count_is_one_line_in_bounded_time(batch, tmp_path):
    out = str(tmp_path / "out_{index}.png")
    started = time.monotonic()
    (code, err), = finish(launch(lambda i: [*batch, "-o", out, "--num-processes", "2", "--process-id", "1",
                                           "--coordinator-timeout", "2"], count=1))  # fmt: skip
    assert code == 8 and time.monotonic() - started < 60
    assert err.strip().splitlines()[-1].startswith("jaxstyle: error: could not join the run through the coordinator 127.0.0.1:")
    # Process 1 told of 3 processes, process 0 of 2: process 1 says so, process 0 sees it go.
    found = finish(launch(lambda i: [*batch, "-o", out, "--num-processes", str(2 + i), "--process-id", str(i)]), timeout=120)
    assert [code for code, _ in found] == [8, 8]
    assert "this process was told 3 processes but the run has 2" in found[1][1]
    assert "process 1 of this 2-process run stopped answering" in found[0][1]
    assert not list(tmp_path.glob("out_*.png"))


def test_flags_that_cannot_make_a_run_are_refused_before_joining(image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "out.png"
    for flags, message in [
        (["--num-processes", "2", "--process-id", "0"], "need --coordinator HOST:PORT"),
        (["--coordinator", "nowhere", "--num-processes", "2", "--process-id", "0"], "coordinator must be HOST:PORT"),
        (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], "coordinator must be HOST:PORT"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "process_id must be in 0..1"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"], "needs the process count and this process's id"),
        (["--coordinator", "auto", "--num-processes", "2"], "leave them out"),
    ]:
        assert main(["stylize", str(content), str(style), "-o", str(out), "--quiet", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(OptionError, match="num_processes must be a whole number"):
        start_processes("127.0.0.1:1234", 0, 0)
    # Process 0 serves the port: one that is taken is refused at once.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (code, err), = finish(launch(lambda i: ["stylize", str(content), str(style), "-o", str(out), "--num-processes", "2",
                                               "--process-id", "0"], count=1, port=port))  # fmt: skip
    assert code == 8 and f"port {port}, but it is in use" in err
