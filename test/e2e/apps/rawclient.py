"""Raw-socket HTTP/1.1 client for what http.client cannot do.

python3 rawclient.py PORT pipeline PATH [PATH ...]   all requests in one sendall, then
                                                     read every response
python3 rawclient.py PORT split PATH                 one request sent in 5 pieces, 20 ms apart
Prints one JSON line: {"pid": ..., "local_port": ..., "statuses": [...]}
"""

import json
import os
import socket
import sys
import time


def request(port, path):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: e2e-rawclient/1\r\n"
            f"Accept: */*\r\nX-Padding: {'p' * 40}\r\n\r\n").encode()


def read_responses(sock, n):
    """Reads n Content-Length-framed responses; returns their status codes."""
    buf = b""
    statuses = []
    while len(statuses) < n:
        while b"\r\n\r\n" not in buf:
            more = sock.recv(65536)
            if not more:
                raise EOFError(f"connection closed after {len(statuses)} responses")
            buf += more
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        statuses.append(int(lines[0].split()[1]))
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        while len(buf) < length:
            more = sock.recv(65536)
            if not more:
                raise EOFError("connection closed mid-body")
            buf += more
        buf = buf[length:]
    return statuses


def main():
    port, mode, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    local_port = sock.getsockname()[1]
    if mode == "pipeline":
        sock.sendall(b"".join(request(port, p) for p in paths))
        statuses = read_responses(sock, len(paths))
    elif mode == "split":
        data = request(port, paths[0])
        step = -(-len(data) // 5)
        for i in range(5):
            sock.sendall(data[i * step:(i + 1) * step])
            if i < 4:
                time.sleep(0.02)
        statuses = read_responses(sock, 1)
    else:
        raise SystemExit(f"unknown mode {mode}")
    sock.close()
    print(json.dumps({"pid": os.getpid(), "local_port": local_port, "statuses": statuses}), flush=True)


if __name__ == "__main__":
    main()
