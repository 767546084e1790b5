"""Real ``collector run`` processes for the daemon tests, and what they leave in the database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from collector.models import batches
from collector.store import open_store

COLLECTOR = Path(sys.executable).parent / "collector"


class DaemonProcess:
    """``collector run`` as a subprocess, its JSON log lines read as they come."""

    def __init__(self, db_url: str, *args: str, env: dict[str, str] | None = None,
                 log_format: str = "json") -> None:
        command = [str(COLLECTOR), "run", "--db", db_url, "--log-format", log_format,
                   "--heartbeat-timeout", "2s", "--shutdown-timeout", "5s", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env={**os.environ, **(env or {})})
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 20) -> dict[str, Any]:
        """The first log line that satisfies ``predicate``, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no such log line; the log was:\n{''.join(self.raw)}")

    def started(self) -> DaemonProcess:
        self.wait_for(lambda line: "started" in line["message"])
        return self

    def batches(self) -> list[dict[str, Any]]:
        return [line["batch"] for line in list(self.lines) if "batch" in line]

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


class NotifySocket:
    """A datagram socket standing in for systemd's, collecting what a daemon sends."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="notify")
        self.path = str(Path(self._dir) / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._open = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._open:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self) -> list[str]:
        return [field for _, message in list(self.messages) for field in message.splitlines()]

    def close(self) -> None:
        self._open = False
        self._thread.join(timeout=2)
        self._sock.close()


def stored_batches(db_url: str) -> list[dict[str, Any]]:
    with open_store(db_url) as store, store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(batches).order_by(batches.c.id))]


def wait_until(predicate: Callable[[], bool], timeout: float = 20, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(message or "timed out")
