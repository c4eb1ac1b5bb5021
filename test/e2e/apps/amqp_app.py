"""Two roles around a RabbitMQ queue, for the AMQP propagation tests (pika, no SDK).

  amqp_app.py front PORT AMQP_PORT QUEUE
      HTTP server: GET /publish/<n>?headers=<json> publishes one message "<n>" with those
      headers (none: no headers table at all) to QUEUE on the default exchange, then answers.
  amqp_app.py consume AMQP_PORT QUEUE N HTTP_PORT OUT
      consumes N messages (manual ack); for each, calls GET http://127.0.0.1:HTTP_PORT/users/<n>
      while handling it, then acks; writes [{body, headers}] as JSON to OUT and exits.
"""

import json
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika


def front(port: int, amqp_port: int, queue: str):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port))
    ch = conn.channel()
    ch.queue_declare(queue)
    lock = threading.Lock()  # one pika channel, many handler threads

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            n = url.path.rsplit("/", 1)[-1]
            q = urllib.parse.parse_qs(url.query)
            props = pika.BasicProperties(headers=json.loads(q["headers"][0])) if "headers" in q else None
            with lock:
                ch.basic_publish("", queue, n.encode(), props)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


def consume(amqp_port: int, queue: str, n: int, http_port: int, out: str):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port))
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=1)  # one delivery per read: the kernel follows it
    got = []

    def on(c, method, props, body):
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/users/{body.decode()}").read()
        got.append({"body": body.decode(), "headers": props.headers})
        c.basic_ack(method.delivery_tag)
        if len(got) == n:
            c.stop_consuming()

    ch.basic_consume(queue, on)
    print("consuming", flush=True)
    ch.start_consuming()
    with open(out, "w") as f:
        json.dump(got, f)
    conn.close()


if __name__ == "__main__":
    if sys.argv[1] == "front":
        front(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        consume(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
