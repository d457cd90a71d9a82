"""A TCP proxy for fault tests: forwards a client to a server, and can lose one reply.

``LossyProxy(target_port)`` listens on a free loopback port. ``lose_reply_to(marker)`` arms it:
the next client message that contains ``marker`` reaches the server, the server's reply is read
and thrown away, and the client's connection is closed, as a network partition or a database
stall between the two would. Only loopback is ever contacted.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["LossyProxy"]


class LossyProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]
        self._marker: bytes | None = None
        self.lost = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def lose_reply_to(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def _take(self, data: bytes) -> bool:
        with self._lock:
            if self._marker is not None and self._marker in data:
                self._marker = None
                return True
            return False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Requests and replies alternate on a MongoDB connection: forward one, then the other."""
        try:
            while True:
                request = client.recv(1 << 20)
                if not request:
                    break
                server.sendall(request)
                reply = server.recv(1 << 20)
                if self._take(request):
                    self.lost += 1
                    break  # the reply is lost and the connection drops
                client.sendall(reply)
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._srv.close()
