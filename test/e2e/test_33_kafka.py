"""Kafka spans: a private Apache Kafka 4.4 broker (KRaft, jars from Maven Central through
scripts/jars.sh, auto-creation of topics off), real clients: confluent-kafka (librdkafka:
Produce v10, Fetch v16 with topic ids), kafka-python (Produce v9, Fetch v12 with topic
names) and franz-go (apps/gokafka: ApiVersions v5, Produce v13 and Fetch v18, both with topic
ids). Every (topic, partition) of a Produce is a PRODUCER `send {topic}` span with its
partition, base offset, message count and client id; a Fetch that returned records is a
CLIENT `poll {topic}` span with the first offset, the count, the consumer group (learned from
the group calls on the coordinator's connection) and span links to the records'
`traceparent` headers; a produce to a topic deleted under the producer fails with
UNKNOWN_TOPIC_OR_PARTITION; polls that returned nothing are counted. A Produce written by
a thread serving an HTTP request is that request's child (and one written by a client
library's own I/O thread is no request's child)."""

import json

import pytest

from e2elib import PYTHON, Procs, brief, free_port, go_build_module, run_curl, server_on, wait_listening
from kafka_server import KafkaBroker

PRODUCER_KIND, CLIENT_KIND = 4, 3
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def kafka(collector, tmp_path_factory):
    """One broker for the module (its start costs seconds), topics `orders` and `shipments`
    (2 partitions), `payments`, `refunds` and `deliveries` created with the admin API."""
    d = tmp_path_factory.mktemp("kafka")
    procs = Procs(d)
    broker = KafkaBroker(d / "broker", spawn=lambda args, log: procs.spawn(args, name="kafka"))
    try:
        broker.start()
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic("orders", 2, 1), NewTopic("payments", 1, 1),
                                      NewTopic("refunds", 1, 1), NewTopic("shipments", 2, 1),
                                      NewTopic("deliveries", 1, 1)]).values():
            f.result(30)
        yield broker
    finally:
        broker.stop()
        procs.cleanup()


def kafka_spans(collector, pid, kind, count, timeout=20):
    mine = lambda s: (s["resource"].get("process.pid") == pid and s["kind"] == kind  # noqa: E731
                      and s["attrs"].get("messaging.system") == "kafka")
    return sorted(collector.spans.wait(mine, count, timeout=timeout), key=lambda s: s["start"])


def links_of(collector, span_id):
    """The span links of a span, read from the exported OTLP/JSON (trace id, span id)."""
    for line in collector.spans.raw_text().splitlines():
        if span_id not in line:
            continue
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    if sp.get("spanId") == span_id:
                        return [(l.get("traceId"), l.get("spanId")) for l in sp.get("links", [])]
    return None


PRODUCER = r"""
import sys
from confluent_kafka import Producer
bootstrap, topic, tp = sys.argv[1], sys.argv[2], sys.argv[3]
p = Producer({"bootstrap.servers": bootstrap, "client.id": "e2e-producer", "linger.ms": 50,
              "compression.type": sys.argv[4]})
got = []
for i, part in enumerate([0, 0, 1]):
    p.produce(topic, value=b"order %d" % i, key=b"k", partition=part, headers=[("traceparent", tp)],
              on_delivery=lambda err, m: got.append((m.partition(), m.offset(), str(err))))
p.flush(30)
for g in sorted(got):
    print("delivered", *g, flush=True)
"""

CONSUMER = r"""
import sys, time
from confluent_kafka import Consumer
bootstrap, topic, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-billing", "client.id": "e2e-consumer",
              "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 100})
c.subscribe([topic])
got, deadline = [], time.time() + 40
while len(got) < want and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        got.append((m.partition(), m.offset()))
c.commit(asynchronous=False)
end = time.time() + 1          # a few polls that return nothing
while time.time() < end:
    c.poll(0.2)
c.close()
for g in sorted(got):
    print("consumed", *g, flush=True)
"""


def parse_lines(out, word):
    return [tuple(int(x) if x.lstrip("-").isdigit() else x for x in line.split()[1:])
            for line in out.splitlines() if line.startswith(word + " ")]


def test_confluent_producer_and_consumer_group(collector, procs, tmp_path, kafka):
    before_empty = collector.ebpf_counter("messaging_empty_polls") or 0
    (tmp_path / "producer.py").write_text(PRODUCER)
    (tmp_path / "consumer.py").write_text(CONSUMER)
    prod, out = procs.run([PYTHON, tmp_path / "producer.py", kafka.bootstrap, "orders", TRACEPARENT, "gzip"],
                          name="producer", timeout=60)
    delivered = parse_lines(out, "delivered")
    assert [(p, e) for p, _, e in delivered] == [(0, "None"), (0, "None"), (1, "None")], out
    # Base offsets: the first record of each partition's batch.
    base = {p: min(o for q, o, _ in delivered if q == p) for p in (0, 1)}

    sends = kafka_spans(collector, prod.pid, PRODUCER_KIND, 2)
    assert len(sends) == 2, brief(sends)
    by_part = {s["attrs"]["messaging.destination.partition.id"]: s for s in sends}
    assert set(by_part) == {"0", "1"}, brief(sends)
    for part, count in (("0", 2), ("1", 1)):
        s = by_part[part]
        a = s["attrs"]
        assert s["name"] == "send orders", brief([s])
        assert a["messaging.system"] == "kafka" and a["messaging.operation.type"] == "send"
        assert a["messaging.operation.name"] == "send" and a["messaging.destination.name"] == "orders"
        assert a["messaging.kafka.offset"] == base[int(part)], (a, delivered)
        assert a["messaging.batch.message_count"] == count, a
        assert a["messaging.client.id"] == "e2e-producer"
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == kafka.port, a
        assert s["status_code"] == 0 and "error.type" not in a
        assert s["start"] <= s["end"]

    cons, out = procs.run([PYTHON, tmp_path / "consumer.py", kafka.bootstrap, "orders", "3"], name="consumer",
                          timeout=90)
    consumed = parse_lines(out, "consumed")
    assert len(consumed) == 3, out
    polls = kafka_spans(collector, cons.pid, CLIENT_KIND, 1)
    polls = [p for p in polls if p["name"] == "poll orders"]
    assert polls, brief(kafka_spans(collector, cons.pid, CLIENT_KIND, 0, timeout=1))
    per_part = {}
    for p in polls:
        a = p["attrs"]
        # librdkafka fetches with topic ids (Fetch v16): the name comes from Metadata.
        assert a["messaging.destination.name"] == "orders" and a["messaging.operation.type"] == "receive", a
        assert a["messaging.operation.name"] == "poll"
        assert a["messaging.consumer.group.name"] == "e2e-billing", a
        assert a["messaging.client.id"] == "e2e-consumer"
        assert a["server.port"] == kafka.port and p["status_code"] == 0
        per_part.setdefault(int(a["messaging.destination.partition.id"]), []).append(
            (a["messaging.kafka.offset"], a["messaging.batch.message_count"]))
    # Every record consumed was in a poll's batches: first offsets and counts cover them.
    for part, offset in consumed:
        assert any(o <= offset < o + n for o, n in per_part.get(part, [])), (per_part, consumed)
    # Links to the producer's context, from the `traceparent` record headers.
    trace, span = TRACEPARENT.split("-")[1:3]
    for p in polls:
        assert (trace, span) in (links_of(collector, p["span_id"]) or []), brief([p])

    # The polls that returned nothing were counted, not exported.
    assert (collector.ebpf_counter("messaging_empty_polls") or 0) > before_empty


DOOMED = r"""
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("doomed", 1, 1)]).values():
    f.result(30)
p = Producer({"bootstrap.servers": bootstrap, "client.id": "e2e-doomed", "linger.ms": 0,
              "topic.metadata.refresh.interval.ms": 600000, "message.timeout.ms": 1500})
errs = []
p.produce("doomed", b"first", on_delivery=lambda err, m: errs.append(str(err)))
p.flush(30)
for f in admin.delete_topics(["doomed"]).values():
    f.result(30)
time.sleep(1)
p.produce("doomed", b"second", on_delivery=lambda err, m: errs.append(str(err)))
p.flush(30)
print("errors", errs, flush=True)
"""


def test_produce_to_a_deleted_topic_is_an_error(collector, procs, tmp_path, kafka):
    (tmp_path / "doomed.py").write_text(DOOMED)
    prod, out = procs.run([PYTHON, tmp_path / "doomed.py", kafka.bootstrap], name="doomed", timeout=60)
    assert "errors ['None'," in out, out
    sends = kafka_spans(collector, prod.pid, PRODUCER_KIND, 2)
    assert all(s["name"] == "send doomed" for s in sends), brief(sends)
    ok, failed = sends[0], sends[1:]
    assert ok["status_code"] == 0 and ok["attrs"]["messaging.kafka.offset"] == 0, brief([ok])
    assert failed, brief(sends)
    for s in failed:
        assert s["status_code"] == 2, brief([s])
        assert s["attrs"]["error.type"] == "UNKNOWN_TOPIC_OR_PARTITION", s["attrs"]
        assert "messaging.kafka.offset" not in s["attrs"]


KAFKA_PYTHON = r"""
import sys
from kafka import KafkaConsumer, KafkaProducer
bootstrap, tp = sys.argv[1], sys.argv[2]
prod = KafkaProducer(bootstrap_servers=bootstrap, client_id="e2e-kpy", linger_ms=20)
futs = [prod.send("payments", value=b"pay %d" % i, partition=0, headers=[("traceparent", tp.encode())])
        for i in range(3)]
prod.flush(30)
print("sent", *sorted(f.get(10).offset for f in futs), flush=True)
prod.close()
cons = KafkaConsumer("payments", bootstrap_servers=bootstrap, client_id="e2e-kpy-consumer", group_id="e2e-audit",
                     auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
                     consumer_timeout_ms=5000)
got = 0
for m in cons:
    got += 1
    if got == 3:
        break
cons.commit()
cons.close()
print("consumed", got, flush=True)
"""


def test_kafka_python_older_versions(collector, procs, tmp_path, kafka):
    (tmp_path / "kpy.py").write_text(KAFKA_PYTHON)
    client, out = procs.run([PYTHON, tmp_path / "kpy.py", kafka.bootstrap, TRACEPARENT], name="kafka-python",
                            timeout=90)
    sent = parse_lines(out, "sent")[0]
    assert parse_lines(out, "consumed") == [(3,)], out
    sends = kafka_spans(collector, client.pid, PRODUCER_KIND, 1)
    assert len(sends) == 1, brief(sends)
    a = sends[0]["attrs"]
    assert sends[0]["name"] == "send payments"
    assert a["messaging.destination.partition.id"] == "0" and a["messaging.kafka.offset"] == sent[0], a
    assert a["messaging.batch.message_count"] == 3 and a["messaging.client.id"] == "e2e-kpy", a
    polls = [p for p in kafka_spans(collector, client.pid, CLIENT_KIND, 1) if p["name"] == "poll payments"]
    assert len(polls) == 1, brief(polls)
    a = polls[0]["attrs"]
    assert a["messaging.kafka.offset"] == sent[0] and a["messaging.batch.message_count"] == 3, a
    assert a["messaging.consumer.group.name"] == "e2e-audit" and a["messaging.client.id"] == "e2e-kpy-consumer", a
    # Linked to the records' traceparent header, and to the send span that wrote them.
    trace, span = TRACEPARENT.split("-")[1:3]
    assert links_of(collector, polls[0]["span_id"]) == [(trace, span), (sends[0]["trace_id"], sends[0]["span_id"])]


PLAIN = r"""
import sys
from confluent_kafka import Consumer, Producer
bootstrap = sys.argv[1]
p = Producer({"bootstrap.servers": bootstrap, "client.id": "e2e-plain", "linger.ms": 0})
for i in range(2):  # two produce requests, no record headers
    p.produce("refunds", value=b"refund %d" % i, partition=0)
    p.flush(30)
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-refunds", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
c.subscribe(["refunds"])
got = 0
while got < 2:
    m = c.poll(1.0)
    if m is not None and not m.error():
        got += 1
c.close()
print("consumed", got, flush=True)
"""


def test_polls_link_to_the_sends_that_wrote_their_records(collector, procs, tmp_path, kafka):
    """Records without a traceparent header: the poll links to the PRODUCER spans this
    collector saw write those offsets."""
    (tmp_path / "plain.py").write_text(PLAIN)
    client, out = procs.run([PYTHON, tmp_path / "plain.py", kafka.bootstrap], name="plain", timeout=90)
    assert parse_lines(out, "consumed") == [(2,)], out
    sends = [s for s in kafka_spans(collector, client.pid, PRODUCER_KIND, 2) if s["name"] == "send refunds"]
    assert len(sends) == 2, brief(sends)
    polls = [p for p in kafka_spans(collector, client.pid, CLIENT_KIND, 1) if p["name"] == "poll refunds"]
    assert polls, brief(polls)
    linked = set()
    for p in polls:
        a = p["attrs"]
        first, n = a["messaging.kafka.offset"], a["messaging.batch.message_count"]
        want = [(s["trace_id"], s["span_id"]) for s in sends
                if s["attrs"]["messaging.kafka.offset"] < first + n
                and first < s["attrs"]["messaging.kafka.offset"] + s["attrs"]["messaging.batch.message_count"]]
        assert links_of(collector, p["span_id"]) == want, (brief([p]), brief(sends))
        linked.update(want)
    assert linked == {(s["trace_id"], s["span_id"]) for s in sends}


def test_franz_go_producer_and_consumer_group(collector, procs, tmp_path, kafka):
    """franz-go (kgo, apps/gokafka) speaks the newest versions: Produce v13 and Fetch v18 both
    name topics by id only, so `send` and `poll` are named from the Metadata responses. Three
    records in one Produce request and one in a second, to partition 1 of `shipments`; the
    consumer group's first fetch returns both batches: one poll linked to both sends."""
    gokafka = go_build_module(tmp_path, "gokafka")
    client, out = procs.run([gokafka, kafka.bootstrap, "shipments", "1", "3", "e2e-go-dispatch"], name="gokafka",
                            timeout=120)
    # A fresh partition: offsets 0..3.
    assert parse_lines(out, "sent") == [(1, 0), (1, 1), (1, 2), (1, 3)], out
    assert parse_lines(out, "consumed") == [(1, 0), (1, 1), (1, 2), (1, 3)], out

    sends = kafka_spans(collector, client.pid, PRODUCER_KIND, 2)
    assert [(s["name"], s["attrs"]["messaging.destination.name"], s["attrs"]["messaging.destination.partition.id"],
             s["attrs"]["messaging.kafka.offset"], s["attrs"]["messaging.batch.message_count"],
             s["attrs"]["messaging.client.id"]) for s in sends] == [
        ("send shipments", "shipments", "1", 0, 3, "e2e-go-producer"),
        ("send shipments", "shipments", "1", 3, 1, "e2e-go-producer")], brief(sends)
    for s in sends:
        a = s["attrs"]
        assert a["messaging.operation.type"] == "send" and a["messaging.operation.name"] == "send", a
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == kafka.port, a
        assert s["status_code"] == 0 and "error.type" not in a, brief([s])
        assert s["parent_span_id"] == "", brief([s])

    polls = [p for p in kafka_spans(collector, client.pid, CLIENT_KIND, 1) if p["attrs"]["messaging.system"] == "kafka"]
    assert [p["name"] for p in polls] == ["poll shipments"], brief(polls)
    p, a = polls[0], polls[0]["attrs"]
    assert a["messaging.destination.name"] == "shipments" and a["messaging.destination.partition.id"] == "1", a
    assert a["messaging.operation.type"] == "receive" and a["messaging.operation.name"] == "poll", a
    assert a["messaging.kafka.offset"] == 0 and a["messaging.batch.message_count"] == 4, a
    assert a["messaging.consumer.group.name"] == "e2e-go-dispatch", a
    assert a["messaging.client.id"] == "e2e-go-consumer", a
    assert a["server.port"] == kafka.port and p["status_code"] == 0, brief([p])
    # No traceparent headers: linked to the two send spans that wrote offsets 0..3.
    assert p["links"] == [(s["trace_id"], s["span_id"]) for s in sends], (brief([p]), brief(sends))


HTTP_PRODUCER = r"""
import socket, struct, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from confluent_kafka import Producer
from kafka import KafkaProducer

port, kport, topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bootstrap = "127.0.0.1:%d" % kport

# -- a minimal synchronous client: Produce v3 (record batch v2, CRC-32C), written and read by
# the calling thread on one connection kept for the process.
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)

def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def varint(n):
    n, out = (n << 1) ^ (n >> 63), bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)

def record_batch(value):
    rec = b"\0" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    rec = varint(len(rec)) + rec
    # attributes, last offset delta, base and max timestamp, producer id, epoch, base sequence, count
    tail = struct.pack(">hiqqqhii", 0, 0, 1700000000000, 1700000000000, -1, -1, -1, 1) + rec
    body = struct.pack(">ibI", -1, 2, crc32c(tail)) + tail
    return struct.pack(">qi", 0, len(body)) + body

raw_lock, raw_sock, corr = threading.Lock(), [None], [0]

def raw_produce(value):
    with raw_lock:
        if raw_sock[0] is None:
            raw_sock[0] = socket.create_connection(("127.0.0.1", kport))
        s = raw_sock[0]
        corr[0] += 1
        cid, t, batch = b"e2e-http-raw", topic.encode(), record_batch(value)
        req = struct.pack(">hhih", 0, 3, corr[0], len(cid)) + cid + struct.pack(">hhi", -1, 1, 10000)
        req += struct.pack(">ih", 1, len(t)) + t + struct.pack(">iii", 1, 0, len(batch)) + batch
        s.sendall(struct.pack(">i", len(req)) + req)       # one write, by this thread
        def take(n):
            b = b""
            while len(b) < n:
                got = s.recv(n - len(b))
                if not got:
                    raise EOFError
                b += got
            return b
        resp = take(struct.unpack(">i", take(4))[0])
        got_corr, _, tlen = struct.unpack(">iih", resp[:10])
        part, err, offset = struct.unpack(">iihq", resp[10 + tlen:10 + tlen + 18])[1:]
        assert got_corr == corr[0] and err == 0, (got_corr, err)
        return offset

rdk = Producer({"bootstrap.servers": bootstrap, "client.id": "e2e-http-rdkafka", "linger.ms": 0})
kpy = KafkaProducer(bootstrap_servers=bootstrap, client_id="e2e-http-kpy", linger_ms=0)

def rdkafka_produce(value):
    got = []
    rdk.produce(topic, value, partition=0, on_delivery=lambda err, m: got.append((err, m.offset())))
    rdk.flush(10)                                        # sent by librdkafka's broker thread
    assert got and got[0][0] is None, got
    return got[0][1]

def kpy_produce(value):
    return kpy.send(topic, value, partition=0).get(10).offset   # sent by kafka-python's sender

CLIENTS = {"raw": raw_produce, "librdkafka": rdkafka_produce, "kafka-python": kpy_produce}

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        _, client, n = self.path.split("/")
        body = str(CLIENTS[client](b"delivery " + n.encode())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_a_produce_written_by_a_request_thread_is_that_requests_child(collector, procs, tmp_path, kafka):
    """A thread-per-request HTTP server (ThreadingHTTPServer) whose handler produces one record
    to `deliveries` with one of three clients. The collector parents by the thread that
    writes the Produce request, so what is true depends on the client:

    * a synchronous client whose handler thread writes the Produce itself (here a minimal one:
      Produce v3 over a socket kept by the process) -> the PRODUCER span is the child of that
      request's SERVER span, in its trace;
    * confluent-kafka: `produce()` only queues the record and `flush()` waits; the Produce is
      written by librdkafka's broker thread (`rdk:broker1`), which serves no request -> the
      PRODUCER span has no parent and a trace of its own (never a wrong parent);
    * kafka-python: `send().get()` likewise only waits; its Sender thread writes the
      Produce -> no parent either.
    """
    (tmp_path / "front.py").write_text(HTTP_PRODUCER)
    port = free_port()
    front = procs.spawn([PYTHON, tmp_path / "front.py", port, kafka.port, "deliveries"], name="front")
    wait_listening(port, front, what="front.py")
    calls = [("raw", 1), ("raw", 2), ("librdkafka", 3), ("kafka-python", 4)]
    offsets = []
    for client, n in calls:
        _, out = run_curl(procs, "--fail", f"http://127.0.0.1:{port}/{client}/{n}")
        offsets.append(int(out))
    assert offsets == [0, 1, 2, 3], offsets  # a fresh topic

    servers = collector.spans.wait(server_on(port), len(calls), timeout=20)
    by_path = {s["attrs"]["url.path"]: s for s in servers}
    assert sorted(by_path) == sorted(f"/{c}/{n}" for c, n in calls), brief(servers)
    sends = kafka_spans(collector, front.pid, PRODUCER_KIND, len(calls))
    by_offset = {s["attrs"]["messaging.kafka.offset"]: s for s in sends}
    assert [(s["name"], s["attrs"]["messaging.kafka.offset"], s["attrs"]["messaging.batch.message_count"],
             s["attrs"]["messaging.client.id"]) for s in sends] == [
        ("send deliveries", 0, 1, "e2e-http-raw"), ("send deliveries", 1, 1, "e2e-http-raw"),
        ("send deliveries", 2, 1, "e2e-http-rdkafka"), ("send deliveries", 3, 1, "e2e-http-kpy")], brief(sends)
    for (client, n), offset in zip(calls, offsets):
        send, server = by_offset[offset], by_path[f"/{client}/{n}"]
        assert send["status_code"] == 0 and send["attrs"]["messaging.destination.partition.id"] == "0"
        if client == "raw":
            # Written by the handler thread while it served the request.
            assert send["parent_span_id"] == server["span_id"], brief([server, send])
            assert send["trace_id"] == server["trace_id"], brief([server, send])
        else:
            # Written by the client library's own I/O thread: no request's child.
            assert send["parent_span_id"] == "", brief([server, send])
            assert send["trace_id"] not in {s["trace_id"] for s in servers}, brief([server, send])
