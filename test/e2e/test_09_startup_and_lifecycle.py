"""Start-up checks, connections that predate the collector, and selectors that combine
exe_path with open_ports."""

import os
import shutil
import subprocess
import uuid

from e2elib import COLLECTOR_BIN, Collector, READY_MARK, brief, client_to, free_port, run_curl, server_on, start_app, start_early_client


def test_not_root_is_refused_with_a_clear_message(tmp_path):
    # The collector runs as `nobody`: loading eBPF programs must fail with a message
    # saying what is missing, not a panic, and the collector must not start.
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    c = Collector({}, tmp_path / "collector")
    c.write_config()
    os.chmod(tmp_path, 0o755)
    os.chmod(c.workdir, 0o777)
    os.chmod(c.config_path, 0o644)
    p = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                        str(COLLECTOR_BIN), "--config", str(c.config_path)],
                       capture_output=True, text=True, timeout=60, cwd="/")
    log = p.stdout + p.stderr
    assert p.returncode != 0, log[-3000:]
    assert READY_MARK not in log
    assert "permission denied" in log and "root" in log, log[-3000:]
    assert "panic" not in log.lower(), log[-3000:]




def test_connection_opened_before_the_collector(collectors, procs, tmp_path):
    port = free_port()
    collectors.stop()
    start_app(procs, port)
    client, flag = start_early_client(procs, tmp_path, port)
    # A collector of its own (a config no other test uses), started after the connection.
    c = collectors.get({"exclude_paths": [f"/never-{uuid.uuid4().hex}"]})
    flag.write_text("")
    client.wait(timeout=30)
    local_port = int(procs.output_of(client).split()[-1])

    servers = c.spans.wait(server_on(port), 3)
    clients = c.spans.wait(client_to(port), 3)
    assert [s["attrs"]["url.path"] for s in servers] == ["/users/1", "/users/2", "/users/3"], brief(servers)
    assert [s["attrs"]["url.path"] for s in clients] == ["/users/1", "/users/2", "/users/3"], brief(clients)
    assert all(s["attrs"]["client.port"] == local_port for s in servers), brief(servers)
    assert all(s["resource"]["process.pid"] == client.pid for s in clients), brief(clients)


def test_selector_with_exe_path_and_open_ports(collectors, procs):
    p1, p2 = free_port(), free_port()
    c = collectors.get({"discovery": {"instrument": [{"exe_path": "*/curl", "open_ports": str(p1)}]}})
    start_app(procs, p1)
    start_app(procs, p2)
    run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p2}/users/1")
    curl, _ = run_curl(procs, "-o", "/dev/null", f"http://127.0.0.1:{p1}/users/2")

    clients = c.spans.wait(client_to(p1), 1)
    assert len(clients) == 1 and clients[0]["resource"]["process.pid"] == curl.pid, brief(clients)
    # curl to the other port, and the python servers (exe does not match), give nothing.
    assert c.spans.wait(client_to(p2), 1, timeout=0) == []
    assert c.spans.wait(server_on(p1), 1, timeout=0) == []
