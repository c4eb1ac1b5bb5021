"""Raw-socket HTTP/1.1 server that records every byte it receives:
python3 dump_server.py PORT OUTFILE [BIND_ADDR].

One thread per connection. Requests are framed by their header block and Content-Length
(several per connection, pipelined ones arriving together included; no chunked bodies);
each gets `HTTP/1.1 200 OK` with a small body. When a connection ends, one JSON line is
appended to OUTFILE:
  {"peer_port": <client's port>, "data": <base64 of every byte received, in order>,
   "requests": [<base64 of each request as framed here>, ...],
   "chunks": [<bytes returned by each recv>, ...]}
"""

import base64
import json
import os
import socket
import sys
import threading

BODY = b"dumped\n"
_write_lock = threading.Lock()


def frame(buf: bytes):
    """(one request, the rest) when buf holds a whole request, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head_end = end + 4
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if len(buf) < head_end + length:
        return None
    return buf[:head_end + length], buf[head_end + length:]


def serve(conn: socket.socket, peer_port: int, outfile: str) -> None:
    received = []
    requests = []
    pending = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received.append(chunk)
            pending += chunk
            while (got := frame(pending)) is not None:
                req, pending = got
                requests.append(req)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(BODY), BODY))
    except OSError:
        pass
    finally:
        conn.close()
        line = json.dumps({
            "peer_port": peer_port,
            "data": base64.b64encode(b"".join(received)).decode(),
            "requests": [base64.b64encode(r).decode() for r in requests],
            "chunks": [len(c) for c in received],
        }) + "\n"
        with _write_lock:
            fd = os.open(outfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


def main() -> None:
    port, outfile = int(sys.argv[1]), sys.argv[2]
    bind = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(128)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=serve, args=(conn, addr[1], outfile), daemon=True).start()


if __name__ == "__main__":
    main()
