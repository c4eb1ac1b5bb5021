#!/usr/bin/env python3
"""Messaging throughput traced vs untraced, in one run (part of `make bench`; alone:
`python3 scripts/bench_messaging.py`): a private RabbitMQ (pika publisher and consumer
processes) and a private Kafka (confluent-kafka producer, then a consumer group), each run
untraced and then with a collector tracing every process (`ebpf: {}`, header insertion on),
rounds interleaved. Reports messages/s, collector CPU µs per message and spans per message."""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import bench  # noqa: E402  (scripts/bench.py: collector config, metrics, CPU)

N_RMQ = int(os.environ.get("BENCH_RMQ_MESSAGES", "20000"))
N_KAFKA = int(os.environ.get("BENCH_KAFKA_MESSAGES", "100000"))
ROUNDS = int(os.environ.get("BENCH_MSG_ROUNDS", "3"))

RMQ_LOAD = r"""
import subprocess, sys, time, pika
role, port, n, queue = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()
ch.queue_declare(queue)
if role == "consume":
    ch.basic_qos(prefetch_count=200)
    got = 0
    def on(c, m, p, b):
        global got
        got += 1
        if got % 50 == 0 or got == n:
            c.basic_ack(m.delivery_tag, multiple=True)
        if got == n:
            c.stop_consuming()
    ch.basic_consume(queue, on)
    print("ready", flush=True)
    ch.start_consuming()
    conn.close()
    sys.exit(0)
cons = subprocess.Popen([sys.executable, __file__, "consume", str(port), str(n), queue], stdout=subprocess.PIPE, text=True)
cons.stdout.readline()
t0 = time.monotonic()
body = b"x" * 100
for i in range(n):
    ch.basic_publish("", queue, body)
t1 = time.monotonic()
cons.wait(300)
t2 = time.monotonic()
print(f"{n / (t1 - t0):.0f} {n / (t2 - t0):.0f}")
conn.close()
"""

KAFKA_LOAD = r"""
import sys, time, uuid
from confluent_kafka import Consumer, Producer
bootstrap, n, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "client.id": "bench"})
body = b"x" * 100
t0 = time.monotonic()
for i in range(n):
    while True:
        try:
            p.produce(topic, body)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush(60)
t1 = time.monotonic()
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex, "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([topic])
got, first = 0, None
while got < n:
    ms = c.consume(1000, 1.0)
    for m in ms:
        if not m.error():
            first = first or time.monotonic()
            got += 1
t2 = time.monotonic()
c.close()
print(f"{n / (t1 - t0):.0f} {n / (t2 - first):.0f}")
"""


def run_load(script, args):
    out = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True, check=True,
                         timeout=600).stdout
    a, b = out.split()[-2:]
    return float(a), float(b)


def rounds(d, name, load, messages):
    """`load()` -> (send rate, receive rate); untraced, then traced, ROUNDS times."""
    mport = bench.free_port()
    bench.write_config(f"{d}/msg.yaml", "debug: {verbosity: basic}", mport, receiver="{}")
    names = ("otelcol_receiver_accepted_spans", "otelcol_ebpf_events_lost", "otelcol_ebpf_messaging_messages_malformed")
    rows = []
    for i in range(ROUNDS):
        base = load()
        col = subprocess.Popen([bench.BIN, "--config", f"{d}/msg.yaml"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        try:
            bench.wait_ready(mport)
            time.sleep(1)
            c0, m0 = bench.cpu_us(col.pid), [bench.metric(mport, n) for n in names]
            traced = load()
            time.sleep(1.5)
            c1, m1 = bench.cpu_us(col.pid), [bench.metric(mport, n) for n in names]
        finally:
            col.terminate()
            col.wait(30)
        spans, lost, malformed = (b - a for a, b in zip(m0, m1))
        row = {"base": base, "traced": traced, "cpu": (c1 - c0) / messages, "spans": spans / messages,
               "lost": lost, "malformed": malformed}
        rows.append(row)
        print(f"{name} {i + 1}: send {base[0]:.0f} -> {traced[0]:.0f} msg/s, receive {base[1]:.0f} -> "
              f"{traced[1]:.0f} msg/s, collector {row['cpu']:.1f} us/msg, spans/msg {row['spans']:.2f}, "
              f"lost {lost:.0f}, malformed {malformed:.0f}", flush=True)
    return rows


def measure_messaging(d):
    from kafka_server import KafkaBroker
    from rabbitmq_server import RabbitMQ

    out = {}
    rmq_script, kafka_script = f"{d}/rmq_load.py", f"{d}/kafka_load.py"
    with open(rmq_script, "w") as f:
        f.write(RMQ_LOAD)
    with open(kafka_script, "w") as f:
        f.write(KAFKA_LOAD)
    with RabbitMQ() as broker:
        seq = iter(range(1000))
        out["rabbitmq"] = rounds(d, "rabbitmq", lambda: run_load(rmq_script, ["send", broker.port, N_RMQ,
                                                                              f"bench{next(seq)}"]), N_RMQ)
    kdir = tempfile.mkdtemp(prefix="bench-kafka-")
    broker = KafkaBroker(kdir, auto_create_topics=True)
    broker.start()
    try:
        seq = iter(range(1000))
        out["kafka"] = rounds(d, "kafka", lambda: run_load(kafka_script, [broker.bootstrap, N_KAFKA,
                                                                          f"bench{next(seq)}"]), N_KAFKA)
    finally:
        broker.stop()
    return out


def report(res) -> str:
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    lines = [f"""## Messaging: RabbitMQ and Kafka, traced vs untraced

`scripts/bench_messaging.py`: RabbitMQ 3.10 with a pika publisher ({N_RMQ} messages of 100 bytes,
default exchange, no confirms) and a pika consumer process (prefetch 200, an ack per 50);
Kafka 4.4 (KRaft) with a confluent-kafka producer ({N_KAFKA} messages of 100 bytes, `linger.ms`
5), then a consumer in a new group reading them back. Each round untraced, then traced
(`ebpf: {{}}`: clients and broker traced, `traceparent` inserted into each AMQP publish);
{ROUNDS} rounds. Send: messages/s the producer wrote; receive: messages/s until the consumer
had them all. Collector CPU per message over the traced run.

| broker | round | send untraced | send traced | ratio | receive untraced | receive traced | ratio | collector CPU µs/msg | spans/msg | events lost | malformed |
|---|---|---|---|---|---|---|---|---|---|---|---|"""]
    for name, rows in res.items():
        for i, r in enumerate(rows):
            (bs, br), (ts, tr) = r["base"], r["traced"]
            lines.append(f"| {name} | {i + 1} | {bs:.0f} | {ts:.0f} | {ts / bs:.2f} | {br:.0f} | {tr:.0f} | "
                         f"{tr / br:.2f} | {r['cpu']:.1f} | {r['spans']:.2f} | {r['lost']:.0f} | {r['malformed']:.0f} |")
    lines.append("")
    for name, rows in res.items():
        lines.append(f"{name}: median send ratio **{med([r['traced'][0] / r['base'][0] for r in rows]):.2f}**, "
                     f"receive ratio **{med([r['traced'][1] / r['base'][1] for r in rows]):.2f}**, collector "
                     f"**{med([r['cpu'] for r in rows]):.1f} µs per message** "
                     f"({med([r['spans'] for r in rows]):.2f} spans per message).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("GOGC", "200")
    print(report(measure_messaging(tempfile.mkdtemp())))
