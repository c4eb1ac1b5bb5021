"""Go calls that carry no inserted header (issue 14): database queries by pgx (pgxpool),
database/sql (pgx's stdlib driver) and go-redis, and an HTTP/1.1 call over TLS, made by a
net/http handler under concurrency, are each the child of exactly the request that made
them. The kernel reports the context of the goroutine writing on a socket when it changes
(CTX_CALLER): a call from a goroutine that serves no request, on a connection a request
used before, has no parent."""

import concurrent.futures
import re

from e2elib import (and_, brief, client_to, counters_settled, free_port, go_build, go_build_module, path_is,
                    run_curl, server_on, start_postgres, start_redis, until_parented, wait_listening)

IN_FLIGHT = 16


def text_names(port, pattern):
    """CLIENT spans to port whose db.query.text matches pattern (group 1: the id)."""
    rx = re.compile(pattern)
    return lambda s: client_to(port)(s) and rx.fullmatch(s["attrs"].get("db.query.text", "")) is not None


def by_id(spans, pattern, attr="db.query.text"):
    rx, out = re.compile(pattern), {}
    for s in spans:
        out.setdefault(rx.fullmatch(s["attrs"][attr]).group(1), []).append(s)
    return out


def test_go_db_calls_are_children_of_their_request(collector, procs, tmp_path):
    pg, rd, tls, app = start_postgres(procs, tmp_path), start_redis(procs, tmp_path), free_port(), free_port()
    gotls = go_build(tmp_path, "gotls")
    t = procs.spawn([gotls, "server", tls], name="gotls-server")
    wait_listening(tls, t, what="gotls server")
    godb = go_build_module(tmp_path, "godb")
    p = procs.spawn([godb, "serve", app, pg, rd, tls], env_extra={"OTEL_SERVICE_NAME": "godb"}, name="godb-serve")
    wait_listening(app, p, what="godb serve")

    def warm(k):
        run_curl(procs, "-o", "/dev/null", "--fail", f"http://127.0.0.1:{app}/req/w{k}")
        got = collector.spans.wait(text_names(rd, f"SET req:w{k} \\?"), 1, timeout=3, settle=0)
        got += collector.spans.wait(and_(client_to(tls), path_is(f"/users/w{k}")), 1, timeout=3, settle=0)
        return len(got) == 2 and all(s["parent_span_id"] for s in got)
    until_parented(warm, "the Go program's database calls never got a parent", timeout=30)

    unknown = ("go_context_unknown_no_goid", "go_context_unknown_no_request", "go_context_unknown_stale")
    before = {c: collector.ebpf_counter(c) for c in unknown}
    assert None not in before.values(), before
    ids = [f"m{i}" for i in range(IN_FLIGHT)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(lambda i: run_curl(procs, "-o", "/dev/null", "--fail", f"http://127.0.0.1:{app}/req/{i}"), ids))
    # Then a goroutine serving no request uses the same pools (connections the requests used).
    run_curl(procs, "-o", "/dev/null", "--fail", f"http://127.0.0.1:{app}/bg/bg1")

    servers = collector.spans.wait(and_(server_on(app), lambda s: s["attrs"].get("url.path", "").startswith("/req/m")),
                                   IN_FLIGHT)
    pools = collector.spans.wait(text_names(pg, r"SELECT \? AS pool_(m\d+|bg1|startup)"), IN_FLIGHT + 2)
    sqls = collector.spans.wait(text_names(pg, r"SELECT \? AS sql_(m\d+|bg1|startup)"), IN_FLIGHT + 2)
    sets = collector.spans.wait(text_names(rd, r"SET req:(m\d+|bg1|startup) \?"), IN_FLIGHT + 2)
    https = collector.spans.wait(and_(client_to(tls), lambda s: s["attrs"].get("url.path", "").startswith("/users/m")),
                                 IN_FLIGHT)
    server_of = {s["attrs"]["url.path"].rsplit("/", 1)[1]: s for s in servers}
    assert sorted(server_of) == sorted(ids), brief(servers)
    calls = {
        "pgxpool": by_id(pools, r"SELECT \? AS pool_(\w+)"),
        "database/sql": by_id(sqls, r"SELECT \? AS sql_(\w+)"),
        "go-redis": by_id(sets, r"SET req:(\w+) \?"),
        "https": by_id(https, r"/users/(\w+)", "url.path"),
    }
    right, total, wrong = 0, 0, []
    for client, of in calls.items():
        for i in ids:
            assert len(of.get(i, [])) == 1, (client, i, brief(of.get(i, [])))
            call, server = of[i][0], server_of[i]
            total += 1
            if call["parent_span_id"] == server["span_id"] and call["trace_id"] == server["trace_id"]:
                right += 1
            else:
                wrong.append((client, i, brief([server, call])))
    print(f"right parents: {right}/{total}")
    assert right == total, wrong
    assert all(c["attrs"]["url.scheme"] == "https" and c["attrs"]["network.protocol.version"] == "1.1"
               for c in https), brief(https)
    # Outside any request (at start-up, and from a goroutine serving none): no parent.
    for client in ("pgxpool", "database/sql", "go-redis"):
        for i in ("startup", "bg1"):
            got = calls[client].get(i, [])
            assert len(got) == 1 and got[0]["parent_span_id"] == "", (client, i, brief(got))
            assert got[0]["trace_id"] not in {s["trace_id"] for s in servers}, (client, i, brief(got))
    # Every context was known: none counted as unknown.
    assert counters_settled(collector, before) == before
