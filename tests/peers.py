"""Real peers from Debian's packages for the tests: tinyproxy (HTTP, CONNECT), microsocks
(SOCKS5) and nginx (static files), each on a free port of 127.0.0.1, each counting from
its own log what its clients did. .ci/run installs them where missing; outside CI a test
that needs a missing one is skipped, under CI it fails."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import IN_CI


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is missing: .ci/run installs Debian's {package} package")
        pytest.skip(f"{name} is not installed (Debian's {package} package)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Peer:
    """A proxy process whose log tells each client connection (``pattern``)."""

    pattern: re.Pattern[str]
    scheme = "http"

    def __init__(self, command: list[str], output: Path, log: Path, port: int, *,
                 probe_logged: bool) -> None:
        self.port = port
        self.log = log
        self._output = output.open("w")
        self.process = subprocess.Popen(command, stdout=self._output, stderr=subprocess.STDOUT)
        try:
            self._wait_listening()
        except BaseException:
            self.close()
            raise
        self.baseline = 0
        if probe_logged:
            self.baseline = self.wait_connections(1)  # the readiness probe's connection

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on {self.port}"
                threading.Event().wait(0.05)

    def url(self, auth: str = "") -> str:
        return f"{self.scheme}://{auth + '@' if auth else ''}127.0.0.1:{self.port}"

    def connections(self) -> int:
        """Client connections the proxy has logged since it was ready."""
        text = self.log.read_text(errors="replace")
        return len(self.pattern.findall(text)) - self.baseline

    def wait_connections(self, count: int, timeout: float = 20) -> int:
        """The connections logged, once at least ``count`` are (a log lags a little)."""
        deadline = time.monotonic() + timeout
        while (seen := self.connections()) < count:
            assert time.monotonic() < deadline, self.log.read_text()
            threading.Event().wait(0.05)
        return seen

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._output.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Tinyproxy(_Peer):
    """tinyproxy: forwards http:// requests and tunnels (CONNECT) to any port."""

    pattern = re.compile(r"Connect \(file descriptor \d+\): ")

    def __init__(self, folder: Path, *, basic_auth: tuple[str, str] | None = None) -> None:
        port = free_port()
        log = folder / "tinyproxy.log"
        config = folder / "tinyproxy.conf"
        config.write_text(
            f"Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Connect\nMaxClients 100\n"
            f'Allow 127.0.0.1\nDisableViaHeader Yes\nLogFile "{log}"\n'
            + (f"BasicAuth {basic_auth[0]} {basic_auth[1]}\n" if basic_auth else ""))
        log.touch()
        super().__init__([tool("tinyproxy", "tinyproxy"), "-d", "-c", str(config)],
                         folder / "tinyproxy.out", log, port, probe_logged=True)


class Microsocks(_Peer):
    """microsocks: SOCKS5, with a user name and password when given."""

    # It logs a client once its connection to the server is made.
    pattern = re.compile(r"^client\[\d+\] ", re.M)
    scheme = "socks5"

    def __init__(self, folder: Path, *, auth: tuple[str, str] | None = None) -> None:
        port = free_port()
        command = [tool("microsocks", "microsocks"), "-i", "127.0.0.1", "-p", str(port)]
        if auth:
            command += ["-u", auth[0], "-P", auth[1]]
        log = folder / "microsocks.log"
        # It logs a client once its connection onwards is made: not the probe's.
        super().__init__(command, log, log, port, probe_logged=False)


class Nginx(_Peer):
    """nginx serving the files of ``root`` as it serves any static site: with its own
    ETag (modification time and size) and Last-Modified, answering a conditional request
    for an unchanged file with 304. Its access log has a line per request."""

    pattern = re.compile(r"^\S+ \S+ \S+ \[[^]]+\] \"", re.M)

    def __init__(self, folder: Path, root: Path) -> None:
        port = free_port()
        log = folder / "nginx-access.log"
        config = folder / "nginx.conf"
        temp = folder / "nginx-temp"
        temp.mkdir(exist_ok=True)
        config.write_text(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {folder}/nginx.pid;\nerror_log {folder}/nginx-error.log;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            f"  access_log {log};\n"
            + "".join(f"  {kind}_temp_path {temp}/{kind};\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + "  types { text/html html; application/json json; text/plain txt; }\n"
            f"  server {{ listen 127.0.0.1:{port}; root {root}; }}\n"
            "}\n")
        log.touch()
        super().__init__([tool("nginx", "nginx"), "-e", str(folder / "nginx-error.log"),
                          "-p", str(folder), "-c", str(config)],
                         folder / "nginx.out", log, port, probe_logged=False)
