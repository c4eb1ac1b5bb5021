"""nginx (master + 1 worker, sendfile on, keep-alive) and one curl fetching 3 URLs on one
connection."""

from e2elib import brief, by_start, children_of, client_to, nginx_conf, run_curl, server_on, wait_listening

HTTP = """
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}"""

BIG = 100 * 1024


def test_nginx_static_files_with_sendfile(collector, procs, port, tmp_path):
    d = tmp_path / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "www" / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    small = b"small file\n"
    (d / "www" / "small.txt").write_bytes(small)
    conf = d / "nginx.conf"
    conf.write_text(nginx_conf(d, HTTP.format(d=d, port=port)))
    nginx = procs.spawn(["nginx", "-p", d, "-e", d / "error.log", "-c", conf, "-g", "daemon off;"], name="nginx")
    wait_listening(port, nginx, what="nginx")

    base = f"http://127.0.0.1:{port}"
    curl, _ = run_curl(procs, "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                       f"{base}/big.bin", f"{base}/small.txt", f"{base}/big.bin?v=2")
    workers = children_of(nginx.pid)

    servers = collector.spans.wait(server_on(port), 3)
    assert len(servers) == 3, brief(servers)
    ordered = by_start(servers)
    assert [s["attrs"]["url.path"] for s in ordered] == ["/big.bin", "/small.txt", "/big.bin"], brief(ordered)
    assert [s["name"] for s in ordered] == ["GET /big.bin", "GET /small.txt", "GET /big.bin"]
    assert [s["attrs"]["http.response.status_code"] for s in ordered] == [200] * 3
    assert {s["resource"]["service.name"] for s in ordered} == {"nginx"}
    assert {s["resource"]["process.executable.name"] for s in ordered} == {"nginx"}
    assert {s["resource"]["process.pid"] for s in ordered} <= workers | {nginx.pid}, (workers, brief(ordered))
    assert len({s["attrs"]["client.port"] for s in ordered}) == 1, brief(ordered)  # one connection
    assert [s["attrs"].get("http.response.body.size") for s in ordered] == [BIG, len(small), BIG], brief(ordered)

    clients = collector.spans.wait(client_to(port), 3)
    assert len(clients) == 3, brief(clients)
    ordered = by_start(clients)
    assert {s["resource"]["service.name"] for s in ordered} == {"curl"}
    assert {s["resource"]["process.pid"] for s in ordered} == {curl.pid}
    assert [s["attrs"]["url.full"] for s in ordered] == [f"{base}/big.bin", f"{base}/small.txt", f"{base}/big.bin?v=2"]
    assert [s["attrs"].get("http.response.body.size") for s in ordered] == [BIG, len(small), BIG], brief(ordered)
    assert len({s["attrs"]["network.local.port"] for s in ordered}) == 1
