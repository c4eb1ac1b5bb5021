"""An HTTP/2 connection first seen mid-stream (a grpcio channel opened and used before the
collector started): its HPACK dynamic table is unknown, so header fields that earlier
calls put there do not decode. Spans still come out with what can be known (method,
timing, the end of each stream, the end the process is on), nothing is made up (no
url.path for a :path that did not decode), and the undecodable blocks are counted."""

import json

from e2elib import APPS, PYTHON, brief, client_to, duration_ms, free_port, server_on, wait_listening, wait_output


def test_grpc_connection_seen_mid_stream(collectors, procs, tmp_path):
    collectors.stop()
    port, gate = free_port(), tmp_path / "gate"
    srv = procs.spawn([PYTHON, APPS / "grpc_app.py", "server", port], name="grpc-server")
    wait_listening(port, srv, what="grpc server")
    # Three calls before the collector: :path, content-type, grpc-status... enter the
    # dynamic tables of both ends.
    cli = procs.spawn([PYTHON, APPS / "grpc_app.py", "gated", port, gate], name="grpc-gated")
    wait_output(procs, cli, "ready")

    c = collectors.get({})  # a fresh collector, started now
    gate.write_text("")
    cli.wait(timeout=30)
    res = json.loads(procs.output_of(cli).strip().splitlines()[-1])
    assert res == {"pid": res["pid"], "unary": 5, "parts": 5}, res

    for pred in (server_on(port), client_to(port)):
        spans = c.spans.wait(pred, 6)
        assert len(spans) == 6, brief(spans)
        # The streaming call's :path is new (a literal), the rest is known.
        lst = [s for s in spans if s["name"] == "demo.Shop/List"]
        assert len(lst) == 1 and lst[0]["attrs"]["rpc.system"] == "grpc", brief(spans)
        assert duration_ms(lst[0]) >= 200, brief(lst)  # to the end of its stream
        # The unary calls' :path came from the table: method and timing, no made-up path.
        gets = [s for s in spans if s is not lst[0]]
        for s in gets:
            assert s["name"] == "POST", brief([s])
            assert s["attrs"]["http.request.method"] == "POST"
            assert s["attrs"]["network.protocol.version"] == "2"
            assert "url.path" not in s["attrs"] and "http.route" not in s["attrs"], brief([s])
            assert duration_ms(s) < 200, brief([s])  # each ended at its own END_STREAM
    assert c.ebpf_counter("h2_headers_undecodable") > 0
