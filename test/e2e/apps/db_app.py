"""Thread-per-request HTTP/1.1 service whose handlers query a database on their own
thread: python3 db_app.py PORT REDIS_PORT|- PG_PORT|- [MYSQL_PORT|-]

Routes:
  GET /redis/<key>   GET <key> on Redis (a connection per thread, kept) and HINCRBY hits <key> 1
  GET /pg/<id>       SELECT name FROM users WHERE id = %s on PostgreSQL (psycopg 3,
                     a connection per thread, kept)
  GET /my/<id>       SELECT name FROM users WHERE id = %s on MySQL/MariaDB (PyMySQL,
                     database shop, a connection per thread, kept)
Answers 200 with what it found.
"""

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

local = threading.local()
REDIS_PORT = None if sys.argv[2] == "-" else int(sys.argv[2])
PG_PORT = None if len(sys.argv) < 4 or sys.argv[3] == "-" else int(sys.argv[3])
MY_PORT = None if len(sys.argv) < 5 or sys.argv[4] == "-" else int(sys.argv[4])


def redis_conn():
    if not hasattr(local, "redis"):
        import redis
        local.redis = redis.Redis(host="127.0.0.1", port=REDIS_PORT)
    return local.redis


def pg_conn():
    if not hasattr(local, "pg"):
        import psycopg
        local.pg = psycopg.connect(f"host=127.0.0.1 port={PG_PORT} user=postgres dbname=postgres", autocommit=True)
    return local.pg


def my_conn():
    if not hasattr(local, "my"):
        import pymysql
        local.my = pymysql.connect(host="127.0.0.1", port=MY_PORT, user="root", database="shop", autocommit=True)
    return local.my


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.split("/")
        if len(parts) == 3 and parts[1] == "redis":
            r = redis_conn()
            found = r.get(parts[2])
            r.hincrby("hits", parts[2], 1)
            body = repr(found).encode()
        elif len(parts) == 3 and parts[1] == "pg":
            row = pg_conn().execute("SELECT name FROM users WHERE id = %s", (int(parts[2]),)).fetchone()
            body = repr(row).encode()
        elif len(parts) == 3 and parts[1] == "my":
            with my_conn().cursor() as cur:
                cur.execute("SELECT name FROM users WHERE id = %s", (int(parts[2]),))
                body = repr(cur.fetchone()).encode()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
