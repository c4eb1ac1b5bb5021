"""A Flask service instrumented with the OpenTelemetry Python SDK (the real one, from PyPI):
python3 sdk_app.py PORT DOWNSTREAM_PORT OTLP_TRACES_URL

It makes its own spans (Flask SERVER spans, `requests` CLIENT spans, W3C `traceparent`
propagation by the SDK) and exports them with OTLP/HTTP (protobuf) to OTLP_TRACES_URL
(e.g. http://127.0.0.1:4318/v1/traces) through a BatchSpanProcessor that exports every
200 ms. The service name comes from OTEL_SERVICE_NAME; HTTP attributes follow the stable
semantic conventions (url.path, http.request.method, ...).

Routes (thread per request, werkzeug's server):
  GET /warmup         200, one SDK span, no call
  GET /checkout/<id>  calls GET http://127.0.0.1:DOWNSTREAM_PORT/users/<id> with `requests`
                      (a new connection per call) and answers with its status and body
Prints "ready" once listening.
"""

import os
import sys

# Stable HTTP semantic conventions (url.path...), before the instrumentations are imported.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

import requests  # noqa: E402
from flask import Flask, Response  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402


def main():
    port, downstream, otlp_url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    provider = TracerProvider(resource=Resource.create())  # service.name from OTEL_SERVICE_NAME
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_url, timeout=10),
                                                   schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()

    app = Flask("sdk_app")
    FlaskInstrumentor().instrument_app(app)

    @app.get("/warmup")
    def warmup():
        return Response("warm\n", mimetype="text/plain")

    @app.get("/checkout/<uid>")
    def checkout(uid):
        r = requests.get(f"http://127.0.0.1:{downstream}/users/{uid}", timeout=10)
        return Response(r.content, status=r.status_code, mimetype="application/json")

    server = make_server("127.0.0.1", port, app, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
