"""A TCP proxy on 127.0.0.1 that a test can freeze (sockets open, nothing forwarded) or cut;
with ``tls``, it speaks TLS to its clients (a TLS front for a plain server)."""

from __future__ import annotations

import select
import socket
import ssl
import threading


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``freeze()``, ``thaw()``, ``cut()``."""

    def __init__(self, target: tuple[str, int], *, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._refusing = False
        self._open = True
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """Keep every connection open and accept new ones, but forward nothing."""
        self._forwarding.clear()

    def thaw(self) -> None:
        self._forwarding.set()

    def cut(self) -> None:
        """Close every connection, and refuse (close at once) new ones until ``thaw``."""
        self._refusing = True
        with self._lock:
            for a, b in self._pairs:
                a.close()
                b.close()
            self._pairs.clear()

    def restore(self) -> None:
        self._refusing = False
        self.thaw()

    def close(self) -> None:
        self._open = False
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while self._open:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._pairs.append((client, upstream))
        self._pump(client, upstream)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while self._open:
                ready, _, _ = select.select([a, b], [], [], 0.1)
                if not self._forwarding.is_set():
                    continue  # frozen: data waits in the kernel, unanswered
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
                    while isinstance(sock, ssl.SSLSocket) and sock.pending():
                        peers[sock].sendall(sock.recv(65536))  # decrypted, not in select
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()
