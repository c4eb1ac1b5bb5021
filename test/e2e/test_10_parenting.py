"""In-process parenting: a request a thread sends while serving another is that one's
child, exactly, under concurrency (thread-per-request app)."""

import concurrent.futures

from e2elib import brief, client_to, free_port, run_curl, server_on, start_app

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"


def test_calls_made_while_serving_are_children(collector, procs):
    front, back = free_port(), free_port()
    start_app(procs, front)
    start_app(procs, back)
    users = list(range(1, 13))
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda u: run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{front}/proxy/{back}/users/{u}"), users))

    servers = collector.spans.wait(server_on(front), len(users))
    calls = collector.spans.wait(client_to(back), len(users))
    assert len(servers) == len(users), brief(servers)
    assert len(calls) == len(users), brief(calls)
    by_id = {s["span_id"]: s for s in servers}
    for call in calls:
        parent = by_id.get(call["parent_span_id"])
        assert parent is not None, brief([call])
        assert parent["trace_id"] == call["trace_id"]
        # The call is for the same user as the request being served.
        assert parent["attrs"]["url.path"].endswith(call["attrs"]["url.path"]), brief([parent, call])
        assert parent["resource"]["process.pid"] == call["resource"]["process.pid"]
        assert parent["start"] <= call["start"] and call["end"] <= parent["end"]
    assert sorted(c["attrs"]["url.path"] for c in calls) == sorted(f"/users/{u}" for u in users)


def test_sampled_flag_follows_the_parent(collector, procs):
    front, back = free_port(), free_port()
    start_app(procs, front)
    start_app(procs, back)
    run_curl(procs, "-o", "/dev/null", "-H", "traceparent: " + TP.format(flags="01"),
             f"http://127.0.0.1:{front}/proxy/{back}/users/1")
    run_curl(procs, "-o", "/dev/null", "-H", "traceparent: " + TP.format(flags="00"),
             f"http://127.0.0.1:{front}/proxy/{back}/users/2")

    servers = collector.spans.wait(server_on(front), 1)
    calls = collector.spans.wait(client_to(back), 1)
    # Only the sampled request and its call were exported.
    assert [s["attrs"]["url.path"] for s in servers] == [f"/proxy/{back}/users/1"], brief(servers)
    assert [c["attrs"]["url.path"] for c in calls] == ["/users/1"], brief(calls)
    assert servers[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert servers[0]["parent_span_id"] == "b7ad6b7169203331"
    assert calls[0]["trace_id"] == servers[0]["trace_id"]
    assert calls[0]["parent_span_id"] == servers[0]["span_id"]
