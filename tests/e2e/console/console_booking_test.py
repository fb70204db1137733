"""End to end: the clinic booking page served by `yilian serve`, in headless Chromium.

Starts the real binary on the example consortium (temp data dir, HTTP on a
port the OS picks, MLLP on any free ports), checks how the page's files and
/api/v1/whoami are served, then runs booking.mjs (playwright-core driving
Debian's /usr/bin/chromium) against it. The screenshot is kept under
YILIAN_ARTIFACT_DIR (the build tree's artifacts/) and its path printed.

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
from engine import Engine  # noqa: E402

CHROMIUM = os.environ.get("YILIAN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.environ.get("YILIAN_ARTIFACT_DIR", os.path.join(os.environ.get("YILIAN_BIN_DIR", "build/bin"), "..", "artifacts"))
SCREENSHOT = os.path.abspath(os.path.join(ARTIFACTS, "console-booking.png"))
CLINIC = "dev-dc-chc-user-token"


class ClinicBookingPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = Engine(extra_args=["--mllp-any-port"])

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def test_console_redirects_to_the_page_and_serves_it_without_a_token(self):
        r = self.engine.request("GET", "/console")
        # urllib follows the 301 by itself: the page arrives from /console/.
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"), r.headers)
        self.assertIn('<script src="/console/app.js"', r.body)
        self.assertIn("default-src 'self'", r.headers["Content-Security-Policy"])
        self.assertEqual(r.headers["Cache-Control"], "no-cache")

    def test_assets_have_their_type_an_etag_and_revalidate_with_304(self):
        for name, mime in [("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")]:
            r = self.engine.request("GET", "/console/" + name)
            self.assertEqual(r.status, 200, name)
            self.assertTrue(r.headers["Content-Type"].startswith(mime), (name, r.headers["Content-Type"]))
            self.assertEqual(r.headers["Cache-Control"], "no-cache")
            self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
            etag = r.headers["ETag"]
            self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
            again = self.engine.request("GET", "/console/" + name, headers={"If-None-Match": etag})
            self.assertEqual(again.status, 304, name)
            self.assertEqual(again.body, "")
            self.assertEqual(again.headers["ETag"], etag)
            weak = self.engine.request("GET", "/console/" + name, headers={"If-None-Match": '"other", W/' + etag})
            self.assertEqual(weak.status, 304, name)
            stale = self.engine.request("GET", "/console/" + name, headers={"If-None-Match": '"0000000000000000"'})
            self.assertEqual(stale.status, 200, name)

    def test_an_unknown_console_file_is_404(self):
        self.assertEqual(self.engine.request("GET", "/console/nope.js").status, 404)
        self.assertEqual(self.engine.request("GET", "/console/..%2Fconsortium.yaml").status, 404)

    def test_whoami_needs_a_token_and_names_the_clinic(self):
        self.assertEqual(self.engine.request("GET", "/api/v1/whoami").status, 401)
        r = self.engine.request("GET", "/api/v1/whoami", token=CLINIC)
        self.assertEqual(r.status, 200, r.body)
        me = r.json()
        self.assertEqual(me["id"], "dc-chc-user")
        self.assertEqual(me["role"], "clinic_user")
        self.assertEqual(me["hospital"], "dc-chc")
        self.assertEqual(me["hospital_name"], "东城街道社区卫生服务中心")
        self.assertIn("display_name", me)

    def test_a_clinic_books_and_sees_the_exam_performed_in_chromium(self):
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
                   YILIAN_CHROMIUM=CHROMIUM, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        started = time.monotonic()
        proc = subprocess.run([node, os.path.join(HERE, "booking.mjs")], cwd=HERE, env=env, timeout=180,
                              capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            state = self.engine.proc.poll()
            sys.stderr.write("engine %s; its log (last lines):\n%s" % (
                "still running" if state is None else "exited with %s" % state, "".join(self.engine.lines[-20:])))
        self.assertEqual(proc.returncode, 0, "the browser scenario failed (see above)")
        self.assertTrue(os.path.getsize(SCREENSHOT) > 10000, SCREENSHOT)
        print("screenshot: %s (browser scenario %.1f s)" % (SCREENSHOT, time.monotonic() - started))


if __name__ == "__main__":
    unittest.main(verbosity=2)
