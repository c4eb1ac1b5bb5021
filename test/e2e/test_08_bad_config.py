"""A bad receiver config stops the collector at start-up, naming the key."""

import pytest

from e2elib import READY_MARK, Collector


@pytest.mark.parametrize("receiver,key", [
    ({"discovery": {"instrument": [{"open_ports": "90-80"}]}}, "open_ports"),
    ({"exclude_paths": ["health"]}, "exclude_paths"),
    ({"bogus": 1}, "bogus"),
    ({"discovery": {"instrument": [{"cgroup_path": "kubepods*"}]}}, "discovery.instrument[0].cgroup_path"),
    ({"discovery": {"instrument": [{"containers_only": False}]}}, "discovery.instrument[0]: empty selector"),
    ({"default_exclude": [{"exe_name": "*otelcol*", "open_ports": "4317"}]}, "default_exclude[0].open_ports"),
    ({"discovery": {"exclude": [{"exe_nam": "sshd"}], "instrument": [{"open_ports": "80"}]}}, "exe_nam"),
], ids=["reversed-port-range", "path-without-slash", "unknown-key", "cgroup-path-without-slash",
        "containers-only-false", "ports-in-default-exclude", "misspelt-selector-key"])
def test_bad_config_is_refused(tmp_path, receiver, key):
    c = Collector(receiver, tmp_path / "collector")
    c.launch()
    try:
        rc = c.wait_exit(60)
        log = c.log()
        assert rc is not None, f"collector still running 60s after start with a bad config:\n{log[-4000:]}"
        assert READY_MARK not in log, log[-4000:]
        assert rc != 0, log[-4000:]
        assert key in log, log[-4000:]
    finally:
        c.stop()
