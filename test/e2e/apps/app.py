"""Keep-alive, thread-per-request HTTP/1.1 test server: python3 app.py PORT [BIND_ADDR].

Routes (query strings are ignored):
  GET /users/<id>     200 JSON with Content-Length
  GET /status/<code>  that status, small body
  GET /slow           200 after 0.2 s
  GET /sleep/<ms>     200 after <ms> milliseconds
  POST /echo          200 JSON {"received": <request body length>}
  GET /chunked        200, Transfer-Encoding: chunked, several small chunks in several writes
  GET /chunked-big    the same with chunks of 5000 and 70000 bytes
  GET /big            200, 1 MiB body
  GET /health         200
  GET /internal/<x>   200
  GET /close          reads the request, closes the connection without responding
  HEAD <any>          the GET headers without the body
  GET /proxy/[<host>:]<port>/<path>  calls GET /<path> on host (127.0.0.1):port from this handler's
                      thread (a new connection per call) and answers with its status
"""

import http.client
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = b"x" * (1 << 20)
CHUNKS = [b"first chunk\n", b"a" * 1000, b"third\n", b"b" * 700, b"last\n"]
# Chunks larger than a syscall capture: their tail is not captured.
BIG_CHUNKS = [b"head\n", b"c" * 5000, b"mid\n", b"d" * 70000, b"tail\n"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-app/1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/proxy/"):
            where, _, rest = path[len("/proxy/"):].partition("/")
            host, _, port = where.rpartition(":")
            c = http.client.HTTPConnection(host or "127.0.0.1", int(port), timeout=10)
            c.request("GET", "/" + rest)
            r = c.getresponse()
            body = r.read()
            c.close()
            return self._send(r.status, body)
        if path.startswith("/users/"):
            uid = path[len("/users/"):]
            return self._send(200, json.dumps({"id": uid, "name": f"user {uid}"}).encode(), "application/json")
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            return self._send(code, f"status {code}\n".encode())
        if path == "/slow":
            time.sleep(0.2)
            return self._send(200, b"slow\n")
        if path.startswith("/sleep/"):
            time.sleep(int(path[len("/sleep/"):]) / 1000)
            return self._send(200, b"slept\n")
        if path == "/big":
            return self._send(200, BIG, "application/octet-stream")
        if path in ("/chunked", "/chunked-big"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            for c in CHUNKS if path == "/chunked" else BIG_CHUNKS:  # one write per chunk, a pause between them
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                time.sleep(0.005)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/close":
            self.close_connection = True  # no response at all
            return
        if path == "/health" or path.startswith("/internal/"):
            return self._send(200, b"ok\n")
        return self._send(404, b"not found\n")

    def do_GET(self):
        self._route()

    def do_HEAD(self):
        self._route()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        if self.path.split("?", 1)[0] == "/echo":
            return self._send(200, json.dumps({"received": n - left}).encode(), "application/json")
        return self._send(404, b"not found\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
