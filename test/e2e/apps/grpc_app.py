"""gRPC peers with grpcio, no generated code (raw bytes messages):
python3 grpc_app.py server PORT [CERT KEY]
                                        serves demo.Shop (over TLS with CERT and KEY): Get (unary; a request b"fail" ends
                                        with NOT_FOUND, b"crash" with INTERNAL), List
                                        (server streaming: 5 messages, 50 ms apart)
                                        Blob (unary: a reply of the size the request names)
python3 grpc_app.py client PORT N       N concurrent Get calls on ONE channel, then one List,
                                        one failing Get; prints one JSON line
python3 grpc_app.py blobs PORT N SIZE   N concurrent Blob calls of SIZE bytes each on ONE
                                        channel, with N small Get calls among them
python3 grpc_app.py meta PORT TP        one Get carrying `traceparent: TP` in its metadata
python3 grpc_app.py echo PORT N [TP]    N concurrent Echo calls on ONE channel (each with `traceparent: TP`
                                        when given), then N more one at a time; prints one JSON line
                                        with the traceparent values the server saw for each call
python3 grpc_app.py tlsget PORT CERT    one Get over TLS (grpcio's own BoringSSL)
python3 grpc_app.py gated PORT GATE     3 Get calls, prints "ready", waits until the file
                                        GATE exists, then 5 concurrent Get calls and one
                                        List on the same channel; prints one JSON line"""

import json
import os
import sys
import time
from concurrent import futures

import grpc


def serve(port, cert=None, key=None):
    def get(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such item")
        if req == b"crash":
            ctx.abort(grpc.StatusCode.INTERNAL, "boom")
        time.sleep(0.02)
        return b"item:" + req

    def lst(req, ctx):
        for i in range(5):
            time.sleep(0.05)
            yield b"part%d" % i

    def blob(req, ctx):
        return b"b" * int(req)

    def echo(req, ctx):
        # The traceparent values the call arrived with, as the server's gRPC stack sees them.
        return ",".join(v for k, v in ctx.invocation_metadata() if k == "traceparent").encode()

    handler = grpc.method_handlers_generic_handler("demo.Shop", {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "Blob": grpc.unary_unary_rpc_method_handler(blob),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "List": grpc.unary_stream_rpc_method_handler(lst),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(f"127.0.0.1:{port}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def client(port, n):
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    get = ch.unary_unary("/demo.Shop/Get")
    lst = ch.unary_stream("/demo.Shop/List")
    calls = [get.future(b"id%d" % i) for i in range(n)]
    got = [c.result() for c in calls]
    parts = list(lst(b"all"))
    codes = []
    for req in (b"fail", b"crash"):
        try:
            get(req)
            codes.append(0)
        except grpc.RpcError as e:
            codes.append(e.code().value[0])
    print(json.dumps({"pid": os.getpid(), "unary": len(got), "parts": len(parts), "codes": codes}))


def blobs(port, n, size):
    opts = [("grpc.max_receive_message_length", size + 1024)]
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=opts)
    blob = ch.unary_unary("/demo.Shop/Blob")
    get = ch.unary_unary("/demo.Shop/Get")
    calls = []
    for i in range(n):
        calls.append(blob.future(str(size).encode()))
        calls.append(get.future(b"small%d" % i))
    sizes = [len(c.result()) for c in calls]
    print(json.dumps({"pid": os.getpid(), "sizes": sizes}))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), *sys.argv[3:5])
    elif sys.argv[1] == "tlsget":
        with open(sys.argv[3], "rb") as c:
            creds = grpc.ssl_channel_credentials(root_certificates=c.read())
        ch = grpc.secure_channel(f"127.0.0.1:{sys.argv[2]}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")])
        print(json.dumps({"pid": os.getpid(), "reply": ch.unary_unary("/demo.Shop/Get")(b"tls").decode()}))
    elif sys.argv[1] == "gated":
        ch = grpc.insecure_channel(f"127.0.0.1:{sys.argv[2]}")
        get, lst = ch.unary_unary("/demo.Shop/Get"), ch.unary_stream("/demo.Shop/List")
        for i in range(3):
            get(b"early%d" % i)
        print("ready", flush=True)
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.05)
        calls = [get.future(b"late%d" % i) for i in range(5)]
        got = [c.result() for c in calls]
        parts = list(lst(b"all"))
        print(json.dumps({"pid": os.getpid(), "unary": len(got), "parts": len(parts)}))
    elif sys.argv[1] == "meta":
        ch = grpc.insecure_channel(f"127.0.0.1:{sys.argv[2]}")
        ch.unary_unary("/demo.Shop/Get")(b"meta", metadata=(("traceparent", sys.argv[3]),))
        print(json.dumps({"pid": os.getpid()}))
    elif sys.argv[1] == "echo":
        ch = grpc.insecure_channel(f"127.0.0.1:{sys.argv[2]}")
        echo = ch.unary_unary("/demo.Shop/Echo")
        n = int(sys.argv[3])
        md = (("traceparent", sys.argv[4]),) if len(sys.argv) > 4 else None
        seen = [c.result().decode() for c in [echo.future(b"e", metadata=md) for _ in range(n)]]
        seen += [echo(b"e", metadata=md).decode() for _ in range(n)]
        print(json.dumps({"pid": os.getpid(), "seen": seen}))
    elif sys.argv[1] == "blobs":
        blobs(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        client(int(sys.argv[2]), int(sys.argv[3]))
