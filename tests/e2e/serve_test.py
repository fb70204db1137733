"""End to end: the yilian binary serving the example consortium on the embedded log."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from engine import EXAMPLE, OPERATOR, Engine, run_cli

ENVELOPE = {
    "eventId": "e2e-evt-1",
    "type": "yilian.events.v1.PatientRegistered",
    "schemaVersion": 1,
    "patientRegistered": {},
    "source": {"hospital": "zs-tertiary", "system": "HIS", "controlId": "MSG0001"},
}


class ServeOnEmbeddedLog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = Engine()

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_health_and_readiness_need_no_token(self):
        r = self.engine.request("GET", "/healthz")
        self.assertEqual(r.status, 200)
        # Ready once the workflows' views have read their topics: a moment
        # after the listener opens, even on an empty data directory.
        r = self.engine.wait_ready()
        self.assertEqual(r.status, 200, r.body)

    def test_api_refuses_requests_without_a_valid_token(self):
        self.assertEqual(self.engine.request("GET", "/api/v1/events").status, 401)
        self.assertEqual(self.engine.request("GET", "/api/v1/events", token="not-a-token").status, 401)
        self.assertEqual(self.engine.request("GET", "/api/v1/events", token=OPERATOR).status, 200)

    def test_a_published_event_is_durable_visible_and_counted(self):
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=e2e-patient",
                                body=json.dumps(ENVELOPE), token=OPERATOR,
                                headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        pos = r.json()
        self.assertEqual(pos["topic"], "yilian.patient.v1")
        self.assertGreaterEqual(pos["offset"], 0)

        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            seen = self.engine.request("GET", "/api/v1/events?topic=yilian.patient.v1", token=OPERATOR).json()["events"]
            if any(e["event_id"] == "e2e-evt-1" for e in seen):
                break
            time.sleep(0.1)
        self.assertTrue(any(e["event_id"] == "e2e-evt-1" and e["type"] == "yilian.events.v1.PatientRegistered" for e in seen), seen)

        metrics = self.engine.request("GET", "/metrics").body
        self.assertRegex(metrics, r'yilian_bus_published_total\{topic="yilian.patient.v1"\} [1-9]')
        self.assertIn("yilian_bus_publish_duration_seconds_bucket", metrics)
        self.assertIn("yilian_bus_publish_errors_total", metrics)
        self.assertRegex(metrics, r'yilian_bus_consumer_lag\{group="yilian-console"')

        # The operator's tail tool reads the same log while the engine runs.
        out = run_cli("events", "tail", "--config", EXAMPLE, "--data-dir", self.engine.data_dir,
                      "--topic", "yilian.patient.v1", "--from-beginning")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = [json.loads(l) for l in out.stdout.splitlines()]
        mine = [l for l in lines if l["key"] == "e2e-patient"]
        self.assertEqual(len(mine), 1, lines)
        self.assertEqual(mine[0]["envelope"]["eventId"], "e2e-evt-1")
        self.assertEqual(mine[0]["headers"]["type"], "yilian.events.v1.PatientRegistered")

    def test_an_event_that_is_not_an_envelope_is_refused_with_the_reason(self):
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=k",
                                body='{"eventId": "x", "noSuchField": true}', token=OPERATOR)
        self.assertEqual(r.status, 400)
        self.assertIn("noSuchField", r.body)
        bad_type = dict(ENVELOPE, type="yilian.events.v1.ReportIssued")
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=k",
                                body=json.dumps(bad_type), token=OPERATOR)
        self.assertEqual(r.status, 422)
        self.assertIn("does not name the body", r.body)
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.nosuch.v1&key=k",
                                body=json.dumps(ENVELOPE), token=OPERATOR)
        self.assertEqual(r.status, 404)

    def test_a_hospital_system_may_publish_only_its_own_events(self):
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=k",
                                body=json.dumps(ENVELOPE), token="dev-qh-county-his-token")
        self.assertEqual(r.status, 403, r.body)
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=k",
                                body=json.dumps(ENVELOPE), token="dev-zs-tertiary-his-token")
        self.assertEqual(r.status, 201, r.body)
        # Clinic users cannot publish at all.
        r = self.engine.request("POST", "/api/v1/events?topic=yilian.patient.v1&key=k",
                                body=json.dumps(ENVELOPE), token="dev-dc-chc-user-token")
        self.assertEqual(r.status, 403, r.body)


class Lifecycle(unittest.TestCase):
    def test_sigterm_stops_cleanly_and_data_survives_a_restart(self):
        data = tempfile.mkdtemp(prefix="yilian-e2e-")
        try:
            engine = Engine(data_dir=data)
            r = engine.request("POST", "/api/v1/events?topic=yilian.report.v1&key=acc-1",
                               body=json.dumps(ENVELOPE), token=OPERATOR)
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(engine.stop(signal.SIGTERM), 0, "".join(engine.lines[-20:]))
            self.assertTrue(any(e.get("msg") == "stopped" for e in engine.log_entries()))
            out = run_cli("events", "tail", "--config", EXAMPLE, "--data-dir", data,
                          "--topic", "yilian.report.v1", "--from-beginning", "--limit", "5")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(len(out.stdout.splitlines()), 1)
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_a_second_engine_on_the_same_data_refuses_to_start(self):
        engine = Engine()
        try:
            out = run_cli("serve", "--config", EXAMPLE, "--data-dir", engine.data_dir,
                          "--http-listen", "127.0.0.1:0", timeout=30)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("lock", out.stderr.lower())
        finally:
            engine.close()


class BadConfiguration(unittest.TestCase):
    def test_config_check_accepts_the_example(self):
        out = run_cli("config", "check", EXAMPLE)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_engine_refuses_to_start_and_names_file_line_and_field(self):
        broken = tempfile.mkdtemp(prefix="yilian-bad-config-")
        try:
            shutil.copytree(EXAMPLE, broken, dirs_exist_ok=True)
            path = os.path.join(broken, "consortium.yaml")
            with open(path) as f:
                text = f.read()
            lines = text.splitlines()
            idx = next(i for i, l in enumerate(lines) if l.strip().startswith("tier:"))
            lines[idx] = lines[idx].split("tier:")[0] + "tier: QUATERNARY"
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            out = run_cli("serve", "--config", broken, "--http-listen", "127.0.0.1:0", timeout=30)
            self.assertEqual(out.returncode, 1)
            self.assertIn("consortium.yaml:%d" % (idx + 1), out.stderr)
            self.assertIn("tier", out.stderr)
            self.assertIn("QUATERNARY", out.stderr)
            check = run_cli("config", "check", broken)
            self.assertEqual(check.returncode, 1)
            self.assertIn("consortium.yaml:%d" % (idx + 1), check.stdout + check.stderr)
        finally:
            shutil.rmtree(broken, ignore_errors=True)


class Cli(unittest.TestCase):
    def test_every_command_has_help_and_version_prints(self):
        for cmd in ([], ["serve"], ["config"], ["config", "check"], ["events"], ["events", "tail"],
                    ["events", "publish"], ["token"], ["token", "hash"]):
            out = run_cli(*cmd, "--help")
            self.assertEqual(out.returncode, 0, (cmd, out.stderr))
            self.assertIn("Usage", out.stdout)
        out = run_cli("--version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"yilian \d+\.\d+\.\d+")

    def test_token_hash_matches_sha256(self):
        import hashlib
        out = run_cli("token", "hash", stdin="dev-operator-token\n")
        self.assertEqual(out.stdout.strip(), hashlib.sha256(b"dev-operator-token").hexdigest())


if __name__ == "__main__":
    unittest.main(verbosity=2)
