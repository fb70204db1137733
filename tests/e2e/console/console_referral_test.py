"""End to end: the referrals tab of the clinic console, in headless Chromium.

Starts the real `yilian serve` on a copy of the example consortium whose
outbound endpoints are local test servers (the hospitals' MLLP receivers that
ACK, the patient notification gateway), so every message the referral loop
sends has somewhere to go. Then runs referral.mjs (playwright-core driving
Debian's /usr/bin/chromium): the xz-thc clinic refers a patient up to
zs-tertiary through the REST API and watches it on the page while the tertiary
hospital accepts it (REST), the clinic books the CT, the tertiary RIS sends
the report (ORU^R01 with a PDF over MLLP) and the tertiary hospital refers
the patient back down, linked to the first referral. The screenshot is kept
under YILIAN_ARTIFACT_DIR (the build tree's artifacts/) as console-referrals.png.

Needs: `apt-get install chromium` and `npm ci` in this folder (tools/lib.sh
does both); without them the test fails and says which is missing.
"""
import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from engine import Engine, consortium_copy  # noqa: E402
from hl7tools import MllpServer, mllp_ports  # noqa: E402
from httptools import WebhookServer  # noqa: E402

CHROMIUM = os.environ.get("YILIAN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("YILIAN_ARTIFACT_DIR", os.path.join(os.environ.get("YILIAN_BIN_DIR", "build/bin"), "..", "artifacts"))
SCREENSHOT = os.path.abspath(os.path.join(ARTIFACTS, "console-referrals.png"))


class ClinicReferralsPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tertiary = MllpServer()               # zs-tertiary's his-mllp endpoint
        cls.clinic = MllpServer(encoding="gbk")   # xz-thc's clinic-mllp endpoint (its HIS speaks GBK)
        cls.county = MllpServer()                 # qh-county's his-mllp endpoint
        cls.gateway = WebhookServer()             # the patient notification gateway
        cls.config = consortium_copy({"127.0.0.1:6661": "127.0.0.1:%d" % cls.tertiary.port,
                                      "127.0.0.1:6663": "127.0.0.1:%d" % cls.clinic.port,
                                      "127.0.0.1:6662": "127.0.0.1:%d" % cls.county.port,
                                      "http://127.0.0.1:6670/notify": "http://127.0.0.1:%d/notify" % cls.gateway.port})
        cls.engine = Engine(config=os.path.join(cls.config, "consortium.yaml"), extra_args=["--mllp-any-port"])
        cls.ports = mllp_ports(cls.engine, ["zs-tertiary"])
        cls.engine.wait_ready(30)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()
        for s in (cls.tertiary, cls.clinic, cls.county, cls.gateway):
            s.close()
        shutil.rmtree(cls.config, ignore_errors=True)

    def test_the_page_has_the_referrals_tab(self):
        r = self.engine.request("GET", "/console/")
        self.assertEqual(r.status, 200)
        self.assertIn('id="tab-referrals"', r.body)
        self.assertIn("script-src 'self'", r.headers["Content-Security-Policy"])

    def test_a_clinic_follows_its_referrals_up_and_down_in_chromium(self):
        self.assertTrue(os.access(CHROMIUM, os.X_OK), "no Chromium at %s: apt-get install chromium" % CHROMIUM)
        node = shutil.which("node")
        self.assertIsNotNone(node, "no node on PATH: apt-get install nodejs")
        self.assertTrue(os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")),
                        "playwright-core is not installed: run `npm ci` in %s" % HERE)
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        for suffix in ("", "-detail", "-en", "-failure"):
            leftover = SCREENSHOT.replace(".png", suffix + ".png")
            if os.path.exists(leftover):
                os.remove(leftover)
        env = dict(os.environ, YILIAN_URL="http://" + self.engine.address, YILIAN_SCREENSHOT=SCREENSHOT,
                   YILIAN_CHROMIUM=CHROMIUM, YILIAN_MLLP_ZS_TERTIARY=str(self.ports["zs-tertiary"]),
                   PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        started = time.monotonic()
        proc = subprocess.run([node, os.path.join(HERE, "referral.mjs")], cwd=HERE, env=env, timeout=180,
                              capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            state = self.engine.proc.poll()
            sys.stderr.write("engine %s; its log (last lines):\n%s" % (
                "still running" if state is None else "exited with %s" % state, "".join(self.engine.lines[-20:])))
        self.assertEqual(proc.returncode, 0, "the browser scenario failed (see above)")
        self.assertTrue(os.path.getsize(SCREENSHOT) > 10000, SCREENSHOT)
        # The loop the page showed really reached the clinic's HIS: the report (ORU^R01) and the
        # downward referral (REF^I12), over MLLP.
        self.clinic.wait_for(lambda m: "ORU^R01" in m, timeout=10)
        self.clinic.wait_for(lambda m: "REF^I12" in m, timeout=10)
        print("screenshot: %s (browser scenario %.1f s)" % (SCREENSHOT, time.monotonic() - started))


if __name__ == "__main__":
    unittest.main(verbosity=2)
