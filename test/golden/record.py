#!/usr/bin/env python3
"""Records the kernel's ring buffer records for each traffic shape into test/golden/*.rec,
the streams rust-core's assembler tests replay without root.

Run as root from the repo root after `make core`:  python3 test/golden/record.py
It starts test/e2e/apps/app.py (and nginx for the writev/sendfile shape), traces only
processes on the scenario's port (discovery by open_ports), and drives one scenario per file.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/examples/trace")
APP = os.path.join(ROOT, "test/e2e/apps/app.py")
OUT = os.path.join(ROOT, "test/golden")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def raw(port, payloads, pause=0.0, read_until_close=False, expect_responses=0):
    s = socket.create_connection(("127.0.0.1", port))
    for p in payloads:
        s.sendall(p)
        time.sleep(pause)
    data = b""
    s.settimeout(2)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if expect_responses and data.count(b"HTTP/1.1 ") >= expect_responses and data.endswith(b"\n") and not read_until_close:
                time.sleep(0.1)
                break
    except socket.timeout:
        pass
    s.close()
    return data


def keepalive(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(1, 6):
        c.request("GET", f"/users/{i}?verbose=1", headers={"User-Agent": "golden/1", "Authorization": "Bearer SECRET-TOKEN"})
        c.getresponse().read()
    c.close()


def pipelined(port):
    req = b"".join(f"GET /users/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for i in (7, 8, 9))
    raw(port, [req], expect_responses=3)


def split(port):
    req = b"GET /users/42 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: split/1\r\n\r\n"
    raw(port, [req[:3], req[3:10], req[10:25], req[25:40], req[40:]], pause=0.02, expect_responses=1)


def chunked(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for path in ("/chunked", "/users/9"):
        c.request("GET", path)
        c.getresponse().read()
    c.close()


def chunkedbig(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for path in ("/chunked-big", "/users/3", "/chunked-big", "/users/4"):
        c.request("GET", path)
        c.getresponse().read()
    c.close()


def bigbody(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for path in ("/big", "/users/1"):
        c.request("GET", path)
        c.getresponse().read()
    body = b"y" * 200_000
    c.request("POST", "/echo", body=body)
    c.getresponse().read()
    c.close()


def expect100(port):
    body = b"z" * 10_000
    head = (f"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 100"), got
    s.sendall(body)
    s.settimeout(2)
    data = b""
    while b"received" not in data:
        data += s.recv(4096)
    s.close()


def head(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("HEAD", "/users/1")
    c.getresponse().read()
    c.request("GET", "/users/2")
    c.getresponse().read()
    c.close()


def noresponse(port):
    raw(port, [b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n"], read_until_close=True)


def traceparent(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/users/5", headers={
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=abc"})
    c.getresponse().read()
    c.request("GET", "/users/6", headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00"})
    c.getresponse().read()
    c.request("GET", "/users/7", headers={"traceparent": "00-XYZ"})
    c.getresponse().read()
    c.close()


def chain(port, backend):
    # 8 concurrent clients, each through the app on `port` to the app on `backend`.
    import threading

    def one(i):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", f"/proxy/{backend}/users/{i}")
        c.getresponse().read()
        c.close()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(1, 9)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def inject(port, backend):
    # The chain again, with the kernel inserting traceparent (context_propagation: headers,
    # the default): odd clients send their own traceparent and tracestate, even ones none.
    import threading

    def one(i):
        c = http.client.HTTPConnection("127.0.0.1", port)
        h = {}
        if i % 2:
            h = {"traceparent": f"00-{i:032x}-{i:016x}-01", "tracestate": f"vendor=v{i}"}
        c.request("GET", f"/proxy/{backend}/users/{i}", headers=h)
        c.getresponse().read()
        c.close()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(1, 9)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


GRPC_APP = os.path.join(ROOT, "test/e2e/apps/grpc_app.py")


def grpc(port):
    # 6 concurrent unary calls on one channel, a server-streaming call, NOT_FOUND, INTERNAL.
    subprocess.run([sys.executable, GRPC_APP, "client", str(port), "6"], check=True, capture_output=True)


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  sendfile on;
  keepalive_timeout 30;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }}
}}
"""


def nginx(port, d):
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                    f"http://127.0.0.1:{port}/big.bin", f"http://127.0.0.1:{port}/small.txt",
                    f"http://127.0.0.1:{port}/missing"], check=True)


SCENARIOS = [grpc, chain, inject, keepalive, pipelined, split, chunked, chunkedbig, bigbody, expect100, head, noresponse, traceparent, nginx]


def main():
    only = set(sys.argv[1:])
    for sc in SCENARIOS:
        if only and sc.__name__ not in only:
            continue
        port = free_port()
        d = tempfile.mkdtemp()
        if sc is nginx:
            os.makedirs(f"{d}/www")
            with open(f"{d}/www/big.bin", "wb") as f:
                f.write(os.urandom(100_000))
            with open(f"{d}/www/small.txt", "w") as f:
                f.write("hello\n")
            with open(f"{d}/nginx.conf", "w") as f:
                f.write(NGINX_CONF.format(d=d, port=port))
            server = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf"])
        elif sc is grpc:
            server = subprocess.Popen([sys.executable, GRPC_APP, "server", str(port)])
        else:
            server = subprocess.Popen([sys.executable, APP, str(port)])
        backend = None
        if sc in (chain, inject):
            backend_port = free_port()
            backend = subprocess.Popen([sys.executable, APP, str(backend_port)])
            wait_port(backend_port)
        wait_port(port)
        rec = os.path.join(OUT, f"{sc.__name__}.rec")
        ports = [port] + ([backend_port] if backend else [])
        cfg = '{"discovery":{"instrument":[{"open_ports":[%s]}]}%s}' % (
            ",".join(f"[{p},{p}]" for p in ports),
            "" if sc is inject else ',"context_propagation":"off"')
        env = dict(os.environ, OTELCOL_EBPF_RECORD=rec, QUIET="1")
        tracer = subprocess.Popen([TRACE, "4", cfg], env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        # The server was started before the tracer: selection happens at accept, as for
        # any server already running when the collector starts.
        if sc is nginx:
            sc(port, d)
        elif sc in (chain, inject):
            sc(port, backend_port)
        else:
            sc(port)
        _, err = tracer.communicate()
        for p in (server, backend):
            if p:
                p.terminate()
                p.wait()
        print(f"{sc.__name__}: {os.path.getsize(rec)} bytes; " + " ".join(l for l in err.splitlines() if l.startswith("spans")))


if __name__ == "__main__":
    main()
