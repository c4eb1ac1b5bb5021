"""The keep-alive, thread-per-request test app (app.py's routes) over TLS with Python's
ssl module (OpenSSL's SSL_read_ex/SSL_write_ex): python3 https_app.py PORT CERT KEY."""

import ssl
import sys
from http.server import ThreadingHTTPServer

from app import Handler


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
