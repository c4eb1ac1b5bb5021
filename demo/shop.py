"""The demo's shop: one of three thread-per-request HTTP/1.1 services, no tracing code.

  python3 shop.py frontend  PORT CHECKOUT_PORT
  python3 shop.py checkout  PORT INVENTORY_PORT REDIS_PORT
  python3 shop.py inventory PORT POSTGRES_PORT

  frontend  GET /buy/<item>        -> checkout POST /checkout/<item>, answers with its status
  checkout  POST /checkout/<item>  -> Redis GET price:<item> and INCR orders,
                                      then inventory POST /reserve/<item>
  inventory POST /reserve/<item>   -> PostgreSQL SELECT stock; 500 "out of stock" when it is 0,
                                      else UPDATE items SET sold = sold + 1

Every outgoing call is made on the handler's own thread (the receiver parents it to the
request that thread serves). The service name comes from OTEL_SERVICE_NAME, set by run.py.
"""

import contextlib
import http.client
import queue
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE, PORT, ARGS = sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]]
# Imported at start, not by the first request (it would show as a gap in its trace).
if ROLE == "checkout":
    import redis
elif ROLE == "inventory":
    import psycopg


def call(port: int, method: str, path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


_redis = None
_pg_pool: queue.LifoQueue = queue.LifoQueue()


def redis_client():
    global _redis
    if _redis is None:
        # Thread-safe, pools its connections. driver_info=None: no CLIENT SETINFO on each
        # new connection, so every purchase has the same spans.
        _redis = redis.Redis(host="127.0.0.1", port=ARGS[1], driver_info=None)
    return _redis


@contextlib.contextmanager
def pg_conn():
    # A small pool: the server starts a thread per connection, so per-thread connections
    # would mean a PostgreSQL login per request.
    try:
        conn = _pg_pool.get_nowait()
    except queue.Empty:
        conn = psycopg.connect(f"host=127.0.0.1 port={ARGS[0]} user=postgres dbname=shop", autocommit=True)
    try:
        yield conn
    finally:
        _pg_pool.put(conn)


def frontend(method: str, parts: list[str]) -> tuple[int, bytes]:
    if method == "GET" and len(parts) == 2 and parts[0] == "buy":
        return call(ARGS[0], "POST", f"/checkout/{int(parts[1])}")
    return 404, b"not found\n"


def checkout(method: str, parts: list[str]) -> tuple[int, bytes]:
    if method == "POST" and len(parts) == 2 and parts[0] == "checkout":
        item = int(parts[1])
        r = redis_client()
        price = r.get(f"price:{item}")
        order = r.incr("orders")
        status, body = call(ARGS[0], "POST", f"/reserve/{item}")
        if status != 200:
            return status, body
        return 200, f"order {order}: item {item} at {price.decode() if price else '?'}\n".encode()
    return 404, b"not found\n"


def inventory(method: str, parts: list[str]) -> tuple[int, bytes]:
    if method == "POST" and len(parts) == 2 and parts[0] == "reserve":
        item = int(parts[1])
        with pg_conn() as db:
            row = db.execute("SELECT stock FROM items WHERE id = %s", (item,)).fetchone()
            if row is None:
                return 404, b"no such item\n"
            if row[0] == 0:
                return 500, b"out of stock\n"
            db.execute("UPDATE items SET sold = sold + 1 WHERE id = %s", (item,))
        return 200, b"reserved\n"
    return 404, b"not found\n"


ROUTES = {"frontend": frontend, "checkout": checkout, "inventory": inventory}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        try:
            status, body = ROUTES[ROLE](self.command, [p for p in self.path.split("?")[0].split("/") if p])
        except Exception as e:  # a failed dependency is this request's 500, not a dead thread
            status, body = 500, f"{type(e).__name__}: {e}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
