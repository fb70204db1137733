"""A receiving web server for outbound webhooks (the patient notification
gateway, a hospital's webhook endpoint): keeps every POST it gets (path,
headers, JSON body) and answers 200, or the status the test sets."""
import http.server
import json
import threading
import time


class WebhookServer:
    def __init__(self, host="127.0.0.1"):
        self.requests = []
        self.status = 200
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = None
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw, "json": body,
                                           "at": time.monotonic()})
                    status = outer.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def received(self, predicate=lambda r: True):
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def wait_for(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(predicate)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no matching webhook call within %ss; got:\n%s" % (
            timeout, "\n---\n".join(json.dumps(r["json"], ensure_ascii=False) for r in self.received())))

    def close(self):
        self._server.shutdown()
        self._server.server_close()
