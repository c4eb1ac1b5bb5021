"""`make demo` for real: the shop (frontend -> checkout -> inventory, Redis, PostgreSQL)
under load, the collector with config/demo.yaml exporting through the `zipkin` exporter,
Zipkin's server, and Zipkin's web UI in headless Chromium. Started by demo/run.py's own
functions, each part private (temp dir, free ports)."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser

import pytest

from e2elib import REPO, wait_until

sys.path.insert(0, str(REPO / "demo"))
import run as demo_run  # noqa: E402

# One successful purchase, in Zipkin's v2 model: (service, kind, name, parent's index).
# Zipkin lower-cases names; the receiver names HTTP spans by method and route, database
# spans by db.query.summary (Redis: the command; redis-py's incr sends INCRBY).
PURCHASE = [
    ("frontend", "SERVER", "get /buy/{id}", None),
    ("frontend", "CLIENT", "post /checkout/{id}", 0),
    ("checkout", "SERVER", "post /checkout/{id}", 1),
    ("checkout", "CLIENT", "get", 2),
    ("redis-server", "SERVER", "get", 3),
    ("checkout", "CLIENT", "incrby", 2),
    ("redis-server", "SERVER", "incrby", 5),
    ("checkout", "CLIENT", "post /reserve/{id}", 2),
    ("inventory", "SERVER", "post /reserve/{id}", 7),
    ("inventory", "CLIENT", "select items", 8),
    ("postgres", "SERVER", "select items", 9),
    ("inventory", "CLIENT", "update items", 8),
    ("postgres", "SERVER", "update items", 11),
]
# The item out of stock: the inventory answers 500 before its UPDATE.
OUT_OF_STOCK = PURCHASE[:11]
ERRORS_OUT_OF_STOCK = {0, 1, 2, 7, 8}  # the HTTP spans, every one answered 500


@pytest.fixture(scope="module")
def demo(collectors):
    collectors.stop()  # never two collectors at once
    d = demo_run.Demo()
    try:
        d.start_all(rate=4)
        yield d
    finally:
        d.stop()


def in_order(trace: list[dict]) -> list[dict]:
    """Spans in tree order as Zipkin's waterfall lists them: depth first, siblings by start
    time. (Not all by start time: a server span can start a few microseconds before its
    client span, when the server's read returns before the client's write does.)"""
    kids: dict[str | None, list[dict]] = {}
    ids = {s["id"] for s in trace}
    for s in sorted(trace, key=lambda s: s["timestamp"]):
        kids.setdefault(s.get("parentId") if s.get("parentId") in ids else None, []).append(s)
    out: list[dict] = []

    def walk(s):
        out.append(s)
        for k in kids.get(s["id"], []):
            walk(k)

    for root in kids.get(None, []):
        walk(root)
    return out


def shape(trace: list[dict]) -> list[tuple]:
    spans = in_order(trace)
    index = {s["id"]: i for i, s in enumerate(spans)}
    return [(s["localEndpoint"]["serviceName"], s["kind"], s["name"], index.get(s.get("parentId")))
            for s in spans]


def wait_trace(demo, ok: bool) -> list[dict]:
    trace = wait_until(lambda: demo_run.complete_trace(demo, ok), timeout=60, interval=1)
    assert trace, (f"no {'successful' if ok else 'failed'} trace through every service in Zipkin; load: "
                   f"{demo.loadgen.counts}; collector:\n{demo.collector.log.read_text()[-3000:]}")
    return trace


def test_purchase_is_one_trace_in_zipkin_with_exact_parents(demo):
    trace = wait_trace(demo, ok=True)
    spans = in_order(trace)
    assert shape(trace) == PURCHASE, spans
    # The parent chain by ids, as Zipkin stores it: the root has none, each other span
    # names the one before it in PURCHASE's chain.
    assert "parentId" not in spans[0]
    for (_, _, _, parent), s in zip(PURCHASE[1:], spans[1:]):
        assert s["parentId"] == spans[parent]["id"], spans
    assert len({s["traceId"] for s in spans}) == 1
    assert len({s["id"] for s in spans}) == len(PURCHASE)
    assert not any("error" in s.get("tags", {}) for s in spans), spans
    tags = [s.get("tags", {}) for s in spans]
    assert tags[0]["http.response.status_code"] == "200"
    assert tags[0]["url.path"].startswith("/buy/")
    item = tags[0]["url.path"].rsplit("/", 1)[1]
    assert tags[1]["url.full"] == f"http://127.0.0.1:{demo.ports['checkout']}/checkout/{item}"
    assert tags[3]["db.query.text"] == f"GET price:{item}"
    assert tags[5]["db.query.text"] == "INCRBY orders ?"
    assert tags[9]["db.query.text"] == "SELECT stock FROM items WHERE id = $1"
    assert tags[9]["db.system.name"] == "postgresql"
    assert tags[9]["db.namespace"] == "shop"
    assert tags[11]["db.query.text"] == "UPDATE items SET sold = sold + ? WHERE id = $1"


def test_out_of_stock_is_a_failed_trace(demo):
    trace = wait_trace(demo, ok=False)
    spans = in_order(trace)
    assert shape(trace) == OUT_OF_STOCK, spans
    for i, s in enumerate(spans):
        assert ("error" in s.get("tags", {})) == (i in ERRORS_OUT_OF_STOCK), (i, s)
    assert spans[0]["tags"]["url.path"] == f"/buy/{demo_run.ITEMS}"
    assert spans[8]["tags"]["http.response.status_code"] == "500"


class WaterfallRows(HTMLParser):
    """The span rows of Zipkin's trace page: its virtualised list positions each row as a
    `position: absolute; ... top: Npx; height: Npx; width: 100%` div. A row's texts are the
    descendant count on its expander button (rows with children), `service: name`, and the
    duration; a span with an error has an error icon (MUI's `MuiSvgIcon-colorError`)."""

    ROW = re.compile(r"position:\s*absolute;\s*left:\s*0px;\s*top:\s*\d+px;\s*height:\s*\d+px;\s*width:\s*100%")
    VOID = ("path", "br", "img", "input")

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self._depth = 0  # open elements inside the current row

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._depth:
            self._depth += tag not in self.VOID
            if tag == "svg" and "MuiSvgIcon-colorError" in (a.get("class") or ""):
                self.rows[-1]["error"] = True
        elif tag == "div" and self.ROW.search(a.get("style") or ""):
            self.rows.append({"texts": [], "error": False})
            self._depth = 1

    def handle_endtag(self, tag):
        if self._depth and tag not in self.VOID:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth and data.strip():
            self.rows[-1]["texts"].append(data.strip())


def drawn_rows(html: str) -> list[tuple[int | None, str, bool]]:
    """(descendant count on the row's button, `service: name`, error icon) for each row drawn."""
    p = WaterfallRows()
    p.feed(html)
    out = []
    for row in p.rows:
        texts = row["texts"]
        count = int(texts[0]) if texts and texts[0].isdigit() else None
        labels = [t for t in texts if re.fullmatch(r"[a-z0-9-]+: .+", t)]
        assert len(labels) == 1, texts
        out.append((count, labels[0], row["error"]))
    return out


def expected_rows(trace: list[dict]) -> list[tuple[int | None, str, bool]]:
    """The waterfall Zipkin draws: depth first, children by start time; a row with children
    shows how many descendants it has, a span tagged `error` an error icon."""
    spans = in_order(trace)
    index = {s["id"]: i for i, s in enumerate(spans)}
    below: dict[int, int] = {}  # descendants of each span
    for s in spans:
        p = s.get("parentId")
        while p in index:
            below[index[p]] = below.get(index[p], 0) + 1
            p = spans[index[p]].get("parentId")
    return [(below.get(i), f"{s['localEndpoint']['serviceName']}: {s['name']}", "error" in s.get("tags", {}))
            for i, s in enumerate(spans)]


@pytest.mark.parametrize("ok", [True, False], ids=["purchase", "out-of-stock"])
def test_zipkin_ui_draws_every_service_of_the_trace(demo, ok):
    trace = wait_trace(demo, ok)
    trace_id = trace[0]["traceId"]
    html = demo_run.dump_dom(f"{demo.zipkin_url}/zipkin/traces/{trace_id}")
    assert trace_id in html, html[-3000:]
    rows = drawn_rows(html)
    assert rows == expected_rows(trace), rows
    drawn_services = {label.split(":", 1)[0] for _, label, _ in rows}
    assert drawn_services == {*demo_run.SERVICES, "redis-server", "postgres"}
    assert len(rows) == len(PURCHASE if ok else OUT_OF_STOCK)
    errors = [i for i, (_, _, error) in enumerate(rows) if error]
    assert errors == ([] if ok else sorted(ERRORS_OUT_OF_STOCK)), rows


def test_screenshot_of_the_waterfall(demo, tmp_path):
    """What `make demo-screenshot` does for the README: a PNG of the trace page."""
    trace = wait_trace(demo, ok=True)
    out = tmp_path / "trace.png"
    demo_run.screenshot(f"{demo.zipkin_url}/zipkin/traces/{trace[0]['traceId']}", out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 900)
