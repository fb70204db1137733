"""Runs the real `yilian` binary for end-to-end tests.

Engine(...) starts `yilian serve` on a config with its own data directory and an
HTTP port chosen by the OS, waits for the "http listening" log line, and offers
small HTTP helpers. Used by the *_test.py files in this folder.
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

BIN = os.path.join(os.environ.get("YILIAN_BIN_DIR", "build/bin"), "yilian")
SRC = os.environ.get("YILIAN_SOURCE_DIR", os.getcwd())
EXAMPLE = os.path.join(SRC, "deploy", "examples", "consortium")
OPERATOR = "dev-operator-token"


def run_cli(*args, stdin=None, timeout=60):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=timeout)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class Engine:
    def __init__(self, config=EXAMPLE, extra_args=(), data_dir=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="yilian-e2e-")
        self.owns_data = data_dir is None
        self.args = [BIN, "serve", "--config", config, "--data-dir", self.data_dir,
                     "--http-listen", "127.0.0.1:0", *extra_args]
        self.lines = []
        self._queue = queue.Queue()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        self.address = self.wait_for_log(lambda e: e.get("msg") == "http listening", 30)["address"]

    def _pump(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def log_entries(self):
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for_log(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("yilian exited (code %s) before the expected log line:\n%s"
                                     % (self.proc.wait(), "".join(self.lines[-30:])))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if predicate(entry):
                return entry
        raise AssertionError("expected log line did not appear within %ss:\n%s" % (timeout, "".join(self.lines[-30:])))

    def wait_ready(self, timeout=60):
        """Polls /readyz until 200 (the views read their topics first) and returns that answer;
        AssertionError, with the last answer and the engine's last log lines, after `timeout` s."""
        deadline = time.monotonic() + timeout
        r = self.request("GET", "/readyz")
        while r.status != 200:
            if time.monotonic() > deadline:
                raise AssertionError("engine not ready within %ss: %s\n%s"
                                     % (timeout, r.body, "".join(self.lines[-20:])))
            time.sleep(0.1)
            r = self.request("GET", "/readyz")
        return r

    def request(self, method, path, body=None, token=None, headers=None, timeout=10):
        req = urllib.request.Request("http://%s%s" % (self.address, path), method=method,
                                     data=body.encode() if isinstance(body, str) else body)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, dict(r.headers), r.read().decode())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read().decode())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if os.environ.get("YILIAN_E2E_STACKS"):
                    out = subprocess.run(["gdb", "-p", str(self.proc.pid), "-batch", "-ex", "thread apply all bt"],
                                         capture_output=True, text=True, timeout=120)
                    with open(os.environ["YILIAN_E2E_STACKS"], "w") as f:
                        f.write(out.stdout)
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("yilian did not stop within %ss after %s; last log lines:\n%s" % (
                timeout, sig, "".join(self.lines[-40:])))
        return self.proc.returncode

    def close(self):
        self.stop()
        self.proc.stderr.close()
        if self.owns_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def consortium_copy(replacements):
    """A copy of the example consortium in a temporary directory with textual
    replacements in its YAML files (e.g. outbound addresses -> test servers).
    Returns the directory; the caller removes it."""
    target = tempfile.mkdtemp(prefix="yilian-consortium-")
    shutil.copytree(EXAMPLE, target, dirs_exist_ok=True)
    for root, _, files in os.walk(target):
        for name in files:
            if not name.endswith(".yaml"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for old, new in replacements.items():
                text = text.replace(old, new)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    return target
