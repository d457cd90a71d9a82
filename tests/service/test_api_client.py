"""The API client against a server that closes a kept-alive connection just as it is reused.

uvicorn closes a connection after 5 s idle. A client that sends on it at that moment gets
"connection reset by peer": `sru-hpo report` failed this way in CI, its plots taking seconds
between two requests. The server here is a real TCP server that does the same thing
deterministically: it answers the first request on a connection, then reads the next one and
resets the connection without answering.
"""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from service.client.api_client import ApiClient, ApiError


class ResettingServer:
    """Answers ``{"n": k}`` to the k-th request; the first connection is reset at its second."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[tuple[int, str]] = []  # (connection number, request line)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        n_conn = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            n_conn += 1
            with conn:
                self._answer(conn, n_conn)

    def _answer(self, conn: socket.socket, n_conn: int) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(buf) < length:
                buf += conn.recv(65536)
            buf = buf[length:]
            self.requests.append((n_conn, head.split(b"\r\n")[0].decode()))
            if n_conn == 1 and len(self.requests) == 2:  # a kept-alive connection, reset
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            body = json.dumps({"n": len(self.requests)}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    s = ResettingServer()
    yield s
    s.close()


def test_a_read_on_a_connection_the_server_closed_is_sent_again(server):
    client = ApiClient(server.url)
    assert client._do("GET", "/healthz") == {"n": 1}
    assert client._do("GET", "/healthz") == {"n": 3}  # the second was reset, the third answered
    assert server.requests == [(1, "GET /healthz HTTP/1.1"), (1, "GET /healthz HTTP/1.1"),
                               (2, "GET /healthz HTTP/1.1")]


def test_a_write_is_not_sent_twice(server):
    client = ApiClient(server.url)
    client._do("GET", "/healthz")
    with pytest.raises(ApiError) as err:
        client._do("POST", "/studies", json={"name": "x"})
    assert err.value.status == 0 and "cannot reach the API" in str(err.value.detail)
    assert [line for _, line in server.requests].count("POST /studies HTTP/1.1") == 1
