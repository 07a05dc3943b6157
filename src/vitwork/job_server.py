"""A warm interpreter for the jobs of a local study (config `job_server`).

Each job of a small study pays Python's start-up before it computes: about 2.5 CPU-seconds to import torch, timm
and vitwork (issue 17), a quarter of the demo. With `job_server: true`, a run on this machine (not a cluster's)
starts one server process that imports the library once (`serve`). Every job script begins with `hand_off()`:
the job's own process sends its script, arguments, working directory, environment and standard streams to the
server, which forks a child that runs the script from the top, already warm. The job's process stays the job
for Snakemake: it passes on the signals it gets (Ctrl-C, SIGTERM, SIGUSR1) to the child, and exits with the
child's exit status; a child whose job process was killed (SIGKILL, the one signal it cannot pass on) is killed
too. A job started while the server is still importing waits for it. Without a server (not configured, gone, or
refusing to serve), or for a job of another thread count than the server's, `hand_off()` returns and the job runs
in its own process as before. The socket lies in a folder only this user can enter.

Hand-written: multiprocessing's forkserver forks only for the process that started it, not for Snakemake's jobs.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

SOCKET_ENV = "VITWORK_JOB_SERVER"  # the server's socket; set by the Snakefile for the jobs of a local run
PID_ENV = "VITWORK_JOB_SERVER_PID"  # its process: a job waits for the socket while the server is starting
READY_TIMEOUT_S = 120.0
THREADS_ENV = "VITWORK_JOB_SERVER_THREADS"  # the thread count its libraries were loaded with
# what Snakemake sets to a job's thread count; OpenBLAS and OpenMP read them once, when loaded: a job forked from
# the server computes as a job of its own process only if its values are the server's
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
SERVER_VARIABLES = (SOCKET_ENV, PID_ENV, THREADS_ENV)  # what `start` sets for the jobs of this process
CHILD_ENV = "VITWORK_JOB_SERVER_CHILD"  # set in a server's child: the job runs here
STARTED_ENV = "VITWORK_JOB_STARTED"  # when the job's own process started (epoch seconds) ...
CPU_ENV = "VITWORK_JOB_CPU"  # ... and the CPU seconds it spent before handing off: the job's clock
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
SERVER_SIGNALS = {signal.SIGTERM, signal.SIGCHLD}  # the server's own handlers
_HEADER = struct.Struct("!I")


def hand_off() -> None:
    """The first line of every job script. With a job server: run the job in a warm child of it and exit this
    process with the child's status (never returns). Without one: return, garbage collection off for the
    imports that follow (vitwork.workflow.job_log freezes their objects and turns collection back on)."""
    address = os.environ.get(SOCKET_ENV)
    if address and not os.environ.get(CHILD_ENV) and same_threads(os.environ):
        status = run_in_server(address, sys.argv)
        if status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)  # nothing of this process is left to finish
    gc.disable()


def same_threads(environment) -> bool:
    """Whether a job with this environment has the thread settings the server loaded its libraries with."""
    threads = environment.get(THREADS_ENV)
    return threads is not None and all(environment.get(name) == threads for name in THREAD_VARIABLES)


def job_clock() -> tuple[float | None, float]:
    """(seconds since the job started, CPU seconds the job used): of this process, or, in a server's child,
    of the job's own process before it handed off plus the child since."""
    started = os.environ.get(STARTED_ENV) if os.environ.get(CHILD_ENV) else None
    if started is not None:
        return time.time() - float(started), float(os.environ.get(CPU_ENV, 0)) + time.process_time()
    return process_age(), time.process_time()


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms resolution), None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        booted_for = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return booted_for - int(stat[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in ticks after boot


# -- the job's side ---------------------------------------------------------------------------------------------


def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    payload = json.dumps(message).encode()
    socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], list(fds))


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (and the descriptors sent with it), read to its last byte and no further (the next message
    may already be waiting); None at end of stream. Descriptors of a message that cannot be read are closed."""
    header, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
    try:
        header += _read_exactly(sock, _HEADER.size - len(header)) if header else b""
        if len(header) < _HEADER.size:
            raise EOFError
        payload = _read_exactly(sock, _HEADER.unpack(header)[0])
        return json.loads(payload), fds
    except EOFError:
        for fd in fds:
            os.close(fd)
        return None, []
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def _job_started() -> float:
    age = process_age()
    return time.time() - (age if age is not None else time.process_time())


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet waited for, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_for(address: str, pid: str | None) -> bool:
    """Whether the server at `address` listens, waiting while its process (`pid`) is still importing."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not os.path.exists(address):
        if pid is None or not _alive(int(pid)) or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _Forwarder:
    """Signal handlers of the job's process while a child runs its job: a signal goes to the child, or waits
    until the child is known; `cancel` restores the handlers and delivers what waited to this process."""

    def __init__(self):
        self.child: int | None = None
        self.pending: list[int] = []
        self.previous = {signum: signal.signal(signum, self) for signum in FORWARDED}

    def __call__(self, signum, frame) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            _kill(self.child, signum)

    def started(self, child: int) -> None:
        self.child = child
        for signum in self.pending:
            _kill(child, signum)

    def cancel(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        for signum in self.pending:
            signal.raise_signal(signum)


def run_in_server(address: str, argv: list[str]) -> int | None:
    """Run the script `argv[0]` in a child of the server at `address`; its exit status, or None when no server
    takes the job (then nothing has run). Signals this process gets from the moment it asks go to the child."""
    if not _wait_for(address, os.environ.get(PID_ENV)):
        return None
    forwarder = _Forwarder()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
        request = {
            "argv": [os.path.abspath(argv[0]), *argv[1:]],
            "cwd": os.getcwd(),
            "env": {**os.environ, STARTED_ENV: repr(_job_started()), CPU_ENV: repr(time.process_time())},
        }
        _send(sock, request, [0, 1, 2])
        reply, _ = _receive(sock)
    except OSError:
        reply = None
    if reply is None or "pid" not in reply:  # no server, or it cannot take this job: it runs here
        sock.close()
        forwarder.cancel()
        return None
    child = reply["pid"]
    try:
        handle = os.pidfd_open(child)  # the child itself, even once its pid is reused
    except (AttributeError, OSError):
        handle = None
    forwarder.started(child)
    try:
        reply, _ = _receive(sock)
    except OSError:
        reply = None
    if reply is None:  # the server stopped before the child: stop the child, wait for it, fail the job
        print(f"vitwork: the job server stopped before this job (process {child}) ended", file=sys.stderr)
        if handle is not None:
            _stop_and_wait(handle)
        else:
            _kill(child, signal.SIGTERM)
        return 1
    return int(reply["exit"])


def _stop_and_wait(handle: int, timeout: float = 60.0) -> None:
    """SIGTERM to the process of pidfd `handle`, then wait (at most `timeout`) until it has ended: a training
    saves its checkpoint before Snakemake may start the job again."""
    import select

    try:
        signal.pidfd_send_signal(handle, signal.SIGTERM)
    except ProcessLookupError:
        return
    select.select([handle], [], [], timeout)  # readable once the process has ended


# -- the server's side ------------------------------------------------------------------------------------------


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal n: 128 + n, as a shell reports it


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job's process and run its script from the top; never returns."""
    code = 1
    try:
        for signum in (*FORWARDED, signal.SIGCHLD):  # as a new interpreter has them: Ctrl-C a KeyboardInterrupt
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SERVER_SIGNALS)  # a SIGTERM sent meanwhile arrives now
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD_ENV] = "1"
        import tempfile

        tempfile.tempdir = None  # found again from the job's TMPDIR
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))  # streams buffered as a new interpreter's would be
        sys.stdout.reconfigure(line_buffering=unbuffered or os.isatty(1), write_through=unbuffered)
        sys.stderr.reconfigure(line_buffering=True, write_through=unbuffered)
        script, *arguments = request["argv"]
        sys.argv = [script, *arguments]
        sys.path[0] = os.path.dirname(script)  # as `python script` sets it
        import runpy

        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException as error:
        import traceback

        traceback.print_exc()
        if isinstance(error, KeyboardInterrupt):
            code = 128 + signal.SIGINT  # as an interpreter that a Ctrl-C ended reports it
    finally:
        import atexit

        try:
            atexit._run_exitfuncs()  # what an interpreter's exit runs (logging's shutdown among them)
        except BaseException:  # noqa: BLE001 - an exit function's error must not change the job's status
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def preload() -> list[str]:
    """Import torch, timm and every vitwork module (models register themselves with timm); the modules that
    could not be imported, each with its error (a job that needs one fails with its own traceback)."""
    import importlib
    import pkgutil

    import vitwork

    failed = []
    # Snakemake's script preamble imports snakemake.logging and snakemake.iocontainers
    first = ["torch", "timm", "matplotlib.pyplot", "snakemake.logging", "snakemake.iocontainers"]
    ours = [module.name for module in pkgutil.walk_packages(vitwork.__path__, "vitwork.")]
    for name in first + [name for name in ours if name != "vitwork.job_server"]:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - reported, and the job that needs it reports it again
            failed.append(f"{name}: {error}")
    return failed


class Server:
    """Accepts jobs on a Unix socket and forks a warm child per job; reaps children and reports each exit
    status to its job; ends on SIGTERM (its children get SIGTERM) or when the process `parent` is gone."""

    def __init__(self, address: str, parent: int | None = None):
        import selectors

        self.address, self.parent = address, parent
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # pid -> the connection of its job
        self.jobs: dict[int, tuple[str, float]] = {}  # pid -> (its script, when it started)
        self.stopping = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_read, self.wake_write = socket.socketpair()

    def serve(self) -> None:
        import selectors

        for sock in (self.wake_read, self.wake_write):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the wakeup fd
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the jobs through their own processes
        for stale in (self.address, self.address + ".new"):  # left by a server that was killed
            if os.path.exists(stale):
                os.unlink(stale)
        self.listener.bind(self.address + ".new")
        self.listener.listen(64)
        os.replace(self.address + ".new", self.address)  # jobs connect only once it listens
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_read, selectors.EVENT_READ)
        print(f"vitwork job server: serving on {self.address} (process {os.getpid()})", flush=True)
        try:
            while not (self.stopping and not self.children):
                if self.parent is not None and os.getppid() != self.parent and not self.stopping:
                    print("vitwork job server: its Snakemake process is gone; stopping", flush=True)
                    self._stop()
                for key, _ in self.selector.select(timeout=1.0):
                    if key.fileobj is self.listener:
                        if not self.stopping:  # SIGTERM may have closed it since select returned
                            self._accept()
                    elif key.fileobj is self.wake_read:
                        while True:
                            try:
                                if not self.wake_read.recv(512):
                                    break
                            except BlockingIOError:
                                break
                    else:
                        self._job_connection(key.fileobj, key.data)
                self._reap()
        finally:
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass

    def _stop(self, *_) -> None:
        if not self.stopping:
            self.stopping = True
            for pid in self.children:
                _kill(pid, signal.SIGTERM)
            try:
                self.selector.unregister(self.listener)
            except (KeyError, ValueError):
                pass
            self.listener.close()

    def _accept(self) -> None:
        import selectors

        conn, _ = self.listener.accept()
        conn.settimeout(10.0)
        try:
            request, fds = _receive(conn, max_fds=3)
        except (OSError, ValueError) as error:
            print(f"vitwork job server: a job's request could not be read: {error}", flush=True)
            conn.close()
            return
        valid = isinstance(request, dict) and {"argv", "cwd", "env"} <= set(request) and len(fds) == 3
        if not valid or self.stopping:
            for fd in fds:
                os.close(fd)
            conn.close()  # the job runs in its own process
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # no handler of the server's may run in the child, and none may miss a child not yet registered
        signal.pthread_sigmask(signal.SIG_BLOCK, SERVER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SERVER_SIGNALS)
            print(f"vitwork job server: cannot fork ({error}); the job runs in its own process", flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        if pid == 0:
            self.selector.close()
            for sock in (self.listener, self.wake_read, self.wake_write, conn, *self.children.values()):
                sock.close()
            _run_child(request, fds)  # unblocks the signals once the job's dispositions are in place
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        self.jobs[pid] = (os.path.basename(request["argv"][0]), time.perf_counter())
        print(f"vitwork job server: process {pid} runs {self.jobs[pid][0]}", flush=True)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SERVER_SIGNALS)
        try:
            _send(conn, {"pid": pid})
        except OSError:
            _kill(pid, signal.SIGKILL)
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _job_connection(self, conn: socket.socket, pid: int) -> None:
        """The job's process closed its end: only SIGKILL ends it without passing a signal on, so the child
        gets SIGKILL too, as a job of its own process would have."""
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            _kill(pid, signal.SIGKILL)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            script, started = self.jobs.pop(pid)
            print(f"vitwork job server: process {pid} ({script}) exited {_exit_code(status)} after "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            try:
                _send(conn, {"exit": _exit_code(status)})
            except OSError:
                pass  # the job's process is gone
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def serve(address: str, parent: int | None = None) -> int:
    """Preload the library, then serve jobs until stopped. Refuses to serve (exit 1, jobs run in their own
    processes) when an import started a thread other than OpenBLAS's pools: a fork copies only the forking thread."""
    started = time.perf_counter()
    import numpy  # noqa: F401 - OpenBLAS starts its thread pools here: it shuts them down around a fork itself
    import scipy.linalg  # noqa: F401

    blas_threads = _native_threads()
    failed = preload()
    for line in failed:
        print(f"vitwork job server: not preloaded: {line}", flush=True)
    threads = _native_threads() - blas_threads
    if threads > 0:
        print(f"vitwork job server: the imports started {threads} thread(s); forking is unsafe, not serving",
              flush=True)
        return 1
    gc.freeze()  # the preloaded objects are shared by every child, untouched by their collections
    print(f"vitwork job server: preloaded in {time.perf_counter() - started:.1f} s", flush=True)
    Server(address, parent).serve()
    return 0


def default_address() -> str:
    """A socket path for a new server: in a new folder only this user can enter (no one else can connect, or
    put a socket there first), under the temporary folder, or /tmp where that path would be too long for a
    Unix socket. `stop` removes it."""
    import tempfile

    parent = tempfile.gettempdir()
    folder = tempfile.mkdtemp(prefix="vitwork-jobs-", dir=parent if len(parent) < 80 else "/tmp")
    return os.path.join(folder, "socket")


def start(address: str, log_path: str, threads: int) -> "subprocess.Popen":
    """Start a server for the jobs of this process (Snakemake's) in the background, its libraries loaded for
    jobs of `threads` threads (a job of another count runs in its own process); jobs reach it through the
    variables set here. Its own session: a terminal's Ctrl-C reaches the jobs through their processes."""
    import subprocess

    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    environment = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "vitwork.job_server", address, "--parent", str(os.getpid())], env=environment,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    os.environ.update({SOCKET_ENV: address, PID_ENV: str(server.pid), THREADS_ENV: str(threads)})
    return server


def stop(server: "subprocess.Popen", timeout: float = 30.0) -> None:
    """Stop a server started by `start` (its running children get SIGTERM) and wait for it."""
    import subprocess

    address = os.environ.get(SOCKET_ENV)
    for name in SERVER_VARIABLES:
        os.environ.pop(name, None)
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if address and os.path.basename(os.path.dirname(address)).startswith("vitwork-jobs-"):
        import shutil

        shutil.rmtree(os.path.dirname(address), ignore_errors=True)  # default_address's folder


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vitwork.job_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="the Unix socket to serve on")
    parser.add_argument("--parent", type=int, help="stop when this process (Snakemake's) is gone")
    args = parser.parse_args(argv)
    return serve(args.address, args.parent)


if __name__ == "__main__":
    sys.exit(main())
