"""The job server (config `job_server`): jobs run in warm forks of one process, with their own streams, working
directory, environment, arguments, exit status and signals; without a server a job runs in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitwork import job_server as server_module
from vitwork.job_server import CHILD_ENV, CPU_ENV, PID_ENV, SOCKET_ENV, STARTED_ENV

# a job script as Snakemake's are: hand_off() first, then the job
JOB = """
from vitwork.job_server import hand_off

hand_off()
import os, signal, sys, time
from pathlib import Path
warm = "torch" in sys.modules  # imported before this line only in a server's child
print(f"pid={os.getpid()} ppid={os.getppid()} warm={warm} cwd={os.getcwd()} argv={sys.argv[1:]} "
      f"setting={os.environ.get('JOB_SETTING')}", flush=True)
print("to stderr", file=sys.stderr, flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "fail":
    raise RuntimeError("the job's own error")
if mode == "wait":
    def stop(signum, frame):
        Path("stopped").write_text(signal.Signals(signum).name)
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    Path("ready").touch()
    time.sleep(60)
sys.exit(int(mode) if mode.isdigit() else 0)
"""


def fields(stdout: str) -> dict:
    return dict(item.split("=", 1) for item in stdout.split("\n")[0].split(" ") if "=" in item)


@pytest.fixture
def server(job_server):
    return job_server.process, job_server.address, job_server.log


@pytest.fixture
def job(tmp_path, job_server):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    (tmp_path / "work").mkdir()

    def start(address, *args, server=None, threads=1, **kwargs):
        """The job, told of `address` and, when given, of the server process (it then waits for it to listen)."""
        env = job_server.env(threads, JOB_SETTING="seven", **{SOCKET_ENV: str(address)})
        if server is None:
            env.pop(PID_ENV)
        else:
            env[PID_ENV] = str(server.pid)
        return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path / "work", env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)

    return start, tmp_path / "work"


def waiting(running: subprocess.Popen, work: Path) -> subprocess.Popen:
    """`running` (a "wait" job) once its SIGTERM handler is in place."""
    deadline = time.monotonic() + 60
    while not (work / "ready").exists():
        assert running.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    return running


def test_a_job_runs_warm_in_a_child_of_the_server_with_its_own_streams_directory_and_environment(server, job):
    process, address, log = server
    start, work = job
    out, err = start(address, "3", "x y", server=process).communicate(timeout=60)
    seen = fields(out)
    assert seen["ppid"] == str(process.pid) and seen["warm"] == "True"  # forked from the server, torch already in
    assert seen["cwd"] == str(work) and seen["setting"] == "seven"
    assert "argv=['3', 'x y']" in out and err == "to stderr\n"
    assert f"process {seen['pid']} (job.py) exited 3" in log.read_text()


def test_a_job_of_another_thread_count_runs_in_its_own_process(server, job):
    """The server's OpenBLAS/OpenMP were loaded for 1 thread: a 2-thread job would not compute as in its own process."""
    process, address, _ = server
    start, _ = job
    other = start(address, server=process, threads=2)
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0 and fields(out)["pid"] == str(other.pid) and fields(out)["warm"] == "False"


def test_the_job_exit_status_and_traceback_come_back(server, job):
    process, address, _ = server
    start, _ = job
    ok = start(address, server=process)
    out, _ = ok.communicate(timeout=60)
    assert ok.returncode == 0 and fields(out)["ppid"] == str(process.pid)
    failed = start(address, "fail", server=process)
    out, err = failed.communicate(timeout=60)
    assert failed.returncode == 1 and "RuntimeError: the job's own error" in err and "Traceback" in err
    assert fields(out)["ppid"] == str(process.pid)


def test_a_message_is_read_to_its_end_and_no_further():
    """A child that ends at once: its job process may find the pid and the exit status in one read."""
    import socket

    mine, theirs = socket.socketpair()
    server_module._send(theirs, {"pid": 12})
    server_module._send(theirs, {"exit": 3})
    theirs.close()
    assert server_module._receive(mine) == ({"pid": 12}, [])
    assert server_module._receive(mine) == ({"exit": 3}, [])
    assert server_module._receive(mine) == (None, [])


def test_the_server_keeps_no_descriptor_of_a_finished_job(server, job):
    process, address, _ = server
    start, _ = job
    descriptors = Path(f"/proc/{process.pid}/fd")
    before = len(list(descriptors.iterdir()))
    for _ in range(3):
        assert start(address, server=process).wait(60) == 0
    deadline = time.monotonic() + 10
    while len(list(descriptors.iterdir())) > before:  # a connection closes just after its job's status is sent
        assert time.monotonic() < deadline, sorted(str(fd.resolve()) for fd in descriptors.iterdir())
        time.sleep(0.1)


def test_a_socket_nobody_listens_on_leaves_the_job_to_its_own_process(server, job, tmp_path):
    import socket

    process, _, _ = server
    start, _ = job
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))  # a socket file left by a killed server
    stale.close()
    alone = start(tmp_path / "stale.sock", "4", server=process)
    out, _ = alone.communicate(timeout=120)
    assert alone.returncode == 4 and fields(out)["pid"] == str(alone.pid)


def test_signals_to_the_job_process_reach_the_child(server, job):
    process, address, _ = server
    start, work = job
    running = waiting(start(address, "wait", server=process), work)
    assert fields(running.stdout.readline())["ppid"] == str(process.pid)
    running.send_signal(signal.SIGTERM)
    assert running.wait(60) == 143 and (work / "stopped").read_text() == "SIGTERM"  # e.g. a training's pre-emption


def test_ctrl_c_ends_the_job_as_it_ends_a_job_of_its_own_process(server, job):
    process, address, _ = server
    start, work = job
    running = waiting(start(address, "wait", server=process), work)
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 130 and "KeyboardInterrupt" in err


def test_a_killed_job_process_kills_its_child(server, job):
    """SIGKILL ends a job of its own process at once, its handlers unrun: the same for the child."""
    process, address, log = server
    start, work = job
    running = waiting(start(address, "wait", server=process), work)
    deadline = time.monotonic() + 60
    child = fields(running.stdout.readline())["pid"]
    running.kill()  # nothing of the job's process runs; its connection closes
    running.wait(60)
    while f"process {child} (job.py) exited {128 + signal.SIGKILL}" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert not (work / "stopped").exists()


def test_a_server_that_dies_under_a_job_stops_its_child_before_the_job_fails(job, tmp_path, job_server):
    """The job's process sends the orphaned child SIGTERM and waits for it (a training saves its checkpoint)."""
    start, work = job
    address = str(tmp_path / "own.sock")
    own = server_module.start(address, str(tmp_path / "own.log"), threads=1)
    for name in server_module.SERVER_VARIABLES:
        os.environ.pop(name)
    running = waiting(start(address, "wait", server=own), work)
    child = int(fields(running.stdout.readline())["pid"])
    assert int(fields(Path(f"/proc/{child}/status").read_text().replace(":\t", "=").replace("\n", " "))["PPid"]) == own.pid
    own.kill()
    own.wait(60)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 1 and "the job server stopped before this job" in err
    assert (work / "stopped").read_text() == "SIGTERM" and not server_module._alive(child)  # ended (maybe unreaped)


def test_without_a_server_the_job_runs_in_its_own_process(job, tmp_path):
    """No socket, and the server process named is gone (e.g. it refused to serve): no wait, the job runs here."""
    start, _ = job
    gone = subprocess.Popen(["true"])
    gone.wait()
    alone = start(tmp_path / "no-such.sock", "4", server=gone)
    out, _ = alone.communicate(timeout=120)
    seen = fields(out)
    assert alone.returncode == 4 and seen["pid"] == str(alone.pid) and seen["warm"] == "False"


def test_the_server_stops_when_its_snakemake_process_is_gone(tmp_path, job_server):
    """--parent names the process whose end stops the server (here one that is not its parent: gone at once)."""
    address = tmp_path / "jobs.sock"
    done = subprocess.run([sys.executable, "-m", "vitwork.job_server", str(address), "--parent", "1"], env=job_server.env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "its Snakemake process is gone; stopping" in done.stdout
    assert not address.exists()


def test_a_server_childs_clock_starts_with_the_job_process(monkeypatch):
    """The start-up a job's log reports includes what its own process spent before handing off."""
    monkeypatch.setenv(CHILD_ENV, "1")
    monkeypatch.setenv(STARTED_ENV, repr(time.time() - 2.0))
    monkeypatch.setenv(CPU_ENV, "0.25")
    age, cpu = server_module.job_clock()
    assert 2.0 <= age < 60 and cpu >= 0.25
    monkeypatch.delenv(CHILD_ENV)
    own_age, own_cpu = server_module.job_clock()  # not a child: this process's own clock
    assert own_age is None or own_age > 0
    assert abs(own_cpu - (cpu - 0.25)) < 0.5
