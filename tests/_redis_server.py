"""A private ``redis-server`` for tests, on a free loopback port (never the shared 6379).

Readiness is not guessed: the server is started with ``--supervised systemd`` and tells us
``READY=1`` on a datagram socket of ours (``NOTIFY_SOCKET``); the wait for it is bounded. A
PING then confirms the port answers. Synchronous on purpose: pytest-trio only runs
function-scoped async fixtures, and a session-scoped server saves most of the start-up cost.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 10.0


class PortTaken(RuntimeError):
    pass


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process is killed (a hung run hitting a CI
    # timeout), the kernel kills the server too instead of leaving it running forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, via the openssl CLI."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl CLI is not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=30)

    # EC keys: generated in milliseconds, where RSA takes a noticeable part of a second.
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=asyncendpoints test CA")
    run("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
    return TlsFiles(ca=directory / "ca.crt", cert=directory / "server.crt",
                    key=directory / "server.key")


class RedisServer:
    """A ``redis-server`` subprocess; ``start()`` it, ``stop()`` it (or use ``with``).

    ``password`` sets the default user's password; ``users`` are ACL rules, for example
    ``"alice on >secret ~* &* +@all"``. With ``tls``, the plain port stays open for
    administration and ``url`` is the ``rediss://`` one.
    """

    def __init__(self, *, password: str | None = None, users: tuple[str, ...] = (),
                 aof: bool = False, unix_socket: bool = False, tls: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.tls_files = make_tls_files(self._dir) if tls else None
        self.unix_socket = str(self._dir / "redis.sock") if unix_socket else None
        self.password = password
        self._options = (password, users, aof, extra_args)
        self._args = self._command_line(*self._options)
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._started_once = False

    def _command_line(self, password: str | None, users: tuple[str, ...], aof: bool,
                      extra_args: tuple[str, ...]) -> list[str]:
        args = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self._dir), "--save", "", "--appendonly", "yes" if aof else "no",
                "--supervised", "systemd", "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self._dir / "redis.log")]
        if password is not None:
            args += ["--requirepass", password]
        for rule in users:
            args += ["--user", *rule.split()]  # one argv word per ACL token
        if self.unix_socket is not None:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        if self.tls_files is not None:
            args += ["--tls-port", str(self.tls_port), "--tls-cert-file", str(self.tls_files.cert),
                     "--tls-key-file", str(self.tls_files.key),
                     "--tls-ca-cert-file", str(self.tls_files.ca), "--tls-auth-clients", "no"]
        return [*args, *extra_args]

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        if self.tls_port is not None:
            return f"rediss://{auth}127.0.0.1:{self.tls_port}/0"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def plain_url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        if self.unix_socket is None:
            raise RuntimeError("this server was started without a unix socket")
        return f"unix://{self.unix_socket}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("already running")
        for attempt in range(3):
            try:
                self._start_once()
                break
            except PortTaken:
                # free_port() can only promise the port was free a moment ago. A first start
                # may move; a restart must keep its port, so it does not get here twice.
                if self._started_once or attempt == 2:
                    raise
                self.port = free_port()
                self.tls_port = free_port() if self.tls_port is not None else None
                self._args = self._command_line(*self._options)
        self._started_once = True

    def _start_once(self) -> None:
        with self._launch() as notify:
            self._wait_ready(notify)
        self.ping()

    @contextlib.contextmanager
    def _launch(self) -> Iterator[socket.socket]:
        """Start the process; the context is its readiness socket, open until left."""
        notify_path = str(self._dir / "notify.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(notify_path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(notify_path)
            # Errors before the log file is opened (a bad option) go to stdout/stderr.
            with open(self._dir / "stdout.log", "ab") as output:
                self._process = subprocess.Popen(
                    self._args, env={**os.environ, "NOTIFY_SOCKET": notify_path},
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            yield notify

    def _wait_ready(self, notify: socket.socket) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(f"redis-server not ready within {READY_TIMEOUT}s")
            # Short slices only so that a server that dies early is noticed early.
            notify.settimeout(min(remaining, 0.2))
            try:
                if b"READY=1" in notify.recv(4096):
                    return
            except TimeoutError:
                pass
            if self._process.poll() is not None:
                log = self.log()
                self._process = None
                if "Address already in use" in log:
                    raise PortTaken(log)
                raise RuntimeError(f"redis-server exited at start-up:\n{log}")

    @staticmethod
    def start_all(servers: Sequence[RedisServer]) -> None:
        """Start several servers at once: launch them all, then wait for each. From this
        thread: a server dies with the thread that started it (PR_SET_PDEATHSIG)."""
        with contextlib.ExitStack() as stack:
            notifies = [stack.enter_context(server._launch()) for server in servers]
            for server, notify in zip(servers, notifies, strict=True):
                server._wait_ready(notify)
        for server in servers:
            server.ping()
            server._started_once = True

    def ping(self) -> None:
        """Send PING over the plain port and expect PONG (or NOAUTH: it answers, it is up)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=READY_TIMEOUT) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
        if not (answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")):
            raise RuntimeError(f"redis-server answered PING with {answer!r}")

    def stop(self) -> None:
        """SIGTERM and wait (a paused server is resumed first, so it can exit)."""
        process = self._process
        if process is None:
            return
        self._process = None
        if self._paused:
            process.send_signal(signal.SIGCONT)
            self._paused = False
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients; their sockets are reset or simply go quiet."""
        process = self._process
        if process is None:
            return
        self._process = None
        self._paused = False
        process.kill()
        process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the port stays open and accepts, but nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log(self) -> str:
        text = ""
        for name in ("stdout.log", "redis.log"):
            with contextlib.suppress(FileNotFoundError):
                text += (self._dir / name).read_text(errors="replace")[-4000:]
        return text

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
