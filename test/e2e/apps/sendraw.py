"""Sends exact bytes to 127.0.0.1:PORT and reads the responses:
python3 sendraw.py PORT MODE NRESP B64 [B64 ...]

The bytes are the base64 arguments (pieces), decoded. MODE:
  one            all pieces concatenated, in ONE send call; then NRESP responses are read
  pieces[:MS]    each piece in its own send call, MS (default 30) ms apart; then NRESP
                 responses are read
  each           each piece in its own send call, followed by reading one response
                 (NRESP must equal the number of pieces): requests in turn on a keep-alive
                 connection
Responses are Content-Length framed. With SENDRAW_GATE=<path> in the environment the
client connects, prints {"connected": <local port>}, and waits for the file <path>.<i> to
exist before it sends piece i in mode `each` (before everything, <path>.0, in the others);
in mode `each` it prints {"responses": <count>} after each response. Prints one JSON line
at the end:
  {"pid": ..., "local_port": ..., "statuses": [...], "bodies": [<latin-1 text>, ...]}
"""

import base64
import json
import os
import socket
import sys
import time


def read_response(sock, buf):
    """One Content-Length framed response: (status, body, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        if not more:
            raise EOFError("connection closed before a whole response head")
        buf += more
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
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
    return int(lines[0].split()[1]), buf[:length], buf[length:]


def main():
    port, mode, nresp = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pieces = [base64.b64decode(a) for a in sys.argv[4:]]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    # SENDRAW_NAGLE=1 keeps Nagle's algorithm on, as most clients leave it.
    if not os.environ.get("SENDRAW_NAGLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    local_port = sock.getsockname()[1]
    gate = os.environ.get("SENDRAW_GATE")

    def wait_gate(i):
        while gate and not os.path.exists(f"{gate}.{i}"):
            time.sleep(0.02)

    if gate:
        print(json.dumps({"connected": local_port}), flush=True)

    statuses, bodies, buf = [], [], b""

    def read_one():
        nonlocal buf
        status, body, buf = read_response(sock, buf)
        statuses.append(status)
        bodies.append(body.decode("latin-1"))

    if mode != "each":
        wait_gate(0)
    if mode == "one":
        sock.sendall(b"".join(pieces))
    elif mode.split(":")[0] == "pieces":
        gap = int(mode.split(":")[1]) / 1000 if ":" in mode else 0.03
        for i, p in enumerate(pieces):
            if i:
                time.sleep(gap)
            sock.sendall(p)
    elif mode == "each":
        if nresp != len(pieces):
            raise SystemExit("mode each: NRESP must equal the number of pieces")
        for i, p in enumerate(pieces):
            wait_gate(i)
            sock.sendall(p)
            read_one()
            if gate:
                print(json.dumps({"responses": len(statuses)}), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    while len(statuses) < nresp:
        read_one()
    sock.close()
    print(json.dumps({"pid": os.getpid(), "local_port": local_port, "statuses": statuses, "bodies": bodies}),
          flush=True)


if __name__ == "__main__":
    main()
