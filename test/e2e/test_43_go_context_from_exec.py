"""A Go program started while the collector runs is followed from its first requests: the
receiver learns it is Go at its exec and probes it then (8-13 ms for this 8 MB program,
measured), not at the next 3-second scan of running programs, which would leave the calls
of the requests it serves until then without a parent. A request within those first
milliseconds can still go unfollowed (no parent, never a wrong one): the test's first
request comes 0.3 s after the start, when a scan every 3 s alone would have found the
program one time in ten."""

import shutil
import time

from e2elib import and_, brief, client_to, free_port, go_build, run_curl, server_on, start_app, wait_listening

STARTS = 3


def test_first_request_of_a_new_go_program_is_followed(collector, procs, tmp_path):
    built = go_build(tmp_path, "goproxy")
    back = free_port()
    start_app(procs, back, env_extra={"OTEL_SERVICE_NAME": "backend"})
    for k in range(STARTS):
        # A copy is a new file: never probed by this collector before.
        exe = tmp_path / f"goproxy-{k}"
        shutil.copy(built, exe)
        front = free_port()
        p = procs.spawn([exe, front], env_extra={"OTEL_SERVICE_NAME": f"goproxy-{k}"}, name=f"goproxy-{k}")
        wait_listening(front, p, what="goproxy")
        time.sleep(0.3)
        run_curl(procs, "-o", "/dev/null", "--fail", f"http://127.0.0.1:{front}/proxy/{back}/users/first-{k}")

        mine = lambda s, k=k: s["attrs"].get("url.path", "").endswith(f"/users/first-{k}")  # noqa: E731
        [server] = collector.spans.wait(and_(server_on(front), mine), 1)
        [call] = collector.spans.wait(and_(client_to(back), mine), 1)
        [callee] = collector.spans.wait(and_(server_on(back), mine), 1)
        assert call["parent_span_id"] == server["span_id"], brief([server, call])
        assert call["trace_id"] == server["trace_id"], brief([server, call])
        assert callee["parent_span_id"] == call["span_id"], brief([call, callee])
        p.kill()
