"""Keep-alive HTTP/1.1 client: every request on ONE connection (http.client).

python3 client.py PORT REQUESTS_JSON
REQUESTS_JSON is a list of {"method": "GET", "path": "/x", "headers": {...}, "body_size": N}
(only "path" is required). Prints one JSON line:
{"pid": ..., "local_port": ..., "responses": [{"status": 200, "length": 12} | {"error": "..."}]}
A request whose connection dies ends the run (the rest would need a new connection).
"""

import http.client
import json
import os
import sys


def main():
    port = int(sys.argv[1])
    reqs = json.loads(sys.argv[2])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    local_port = conn.sock.getsockname()[1]
    results = []
    for r in reqs:
        method = r.get("method", "GET")
        body = b"z" * r["body_size"] if r.get("body_size") else None
        try:
            conn.request(method, r["path"], body=body, headers=r.get("headers", {}))
            resp = conn.getresponse()
            data = resp.read()
            results.append({"status": resp.status, "length": len(data)})
        except (http.client.HTTPException, OSError) as e:
            results.append({"error": f"{type(e).__name__}: {e}"})
            break
    conn.close()
    print(json.dumps({"pid": os.getpid(), "local_port": local_port, "responses": results}), flush=True)


if __name__ == "__main__":
    main()
