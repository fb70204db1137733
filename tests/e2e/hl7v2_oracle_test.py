"""HAPI as the oracle for yilian's HL7 v2 parser.

For every message of tests/data/hl7v2/corpus, the HAPI peer
(tests/peers/hapi: `java -jar yilian-hapi-peers.jar fields`, HAPI's PipeParser)
and yilian's parser (`hl7_fields`, built from tests/peers/hl7_fields.cc) print
the same fixed list of fields (schema: FieldsCommand.java); this test requires
them to agree on the charset, the segments, the repetition counts and every
value.

The one deliberate difference is normalised before comparing: HAPI keeps the
formatting and hex escape sequences \\.br\\ \\H\\ \\N\\ \\Xhh..\\ as sent (so FT
text round-trips), while yilian decodes them (\\.br\\ -> line feed, \\H\\ \\N\\ ->
nothing, \\Xhh\\ -> the bytes). Nothing else is normalised.

The HAPI jar is built on demand by tests/peers/hapi/build (Maven, Maven
Central); when it cannot be built the test fails, it never skips.
Environment: YILIAN_SOURCE_DIR (repo), YILIAN_BIN_DIR (where hl7_fields is).
"""
import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("YILIAN_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("YILIAN_BIN_DIR") or os.path.join(SRC, "build", "bin")
CORPUS = os.path.join(SRC, "tests", "data", "hl7v2", "corpus")
HAPI_BUILD = os.path.join(SRC, "tests", "peers", "hapi", "build")
HL7_FIELDS = os.path.join(BIN, "hl7_fields")


def build_hapi_jar():
    """Path of the HAPI peer jar, building it if needed; AssertionError if that fails."""
    try:
        r = subprocess.run([HAPI_BUILD], capture_output=True, text=True, timeout=900)
    except OSError as e:
        raise AssertionError("cannot run %s: %s" % (HAPI_BUILD, e))
    jar = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0 or not os.path.isfile(jar):
        raise AssertionError("the HAPI peer could not be built (needs a JDK and Maven with access to Maven "
                             "Central):\n%s\n%s" % (r.stdout, r.stderr))
    return jar


def corpus_index():
    with open(os.path.join(CORPUS, "index.json"), encoding="utf-8") as f:
        return json.load(f)


def dump_corpus(command):
    """Runs a `fields` dump over the whole corpus; {file name: line}. Files
    without MSH-18 are read with the sender's profile default, given with
    --default-charset before them."""
    args = []
    current = None
    names = []
    for entry in corpus_index():
        if entry["default_charset"] != current:
            current = entry["default_charset"]
            args += ["--default-charset", current]
        args.append(os.path.join(CORPUS, entry["file"]))
        names.append(entry["file"])
    r = subprocess.run(command + args, capture_output=True, timeout=600)
    stderr = r.stderr.decode("utf-8", "replace")[-3000:]
    out = {}
    for raw in r.stdout.decode("utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            raise AssertionError("%s printed a line that is not JSON: %r\nstderr:\n%s" % (command[0], raw[:300], stderr))
        out[os.path.basename(line["file"])] = line
    missing = [n for n in names if n not in out]
    if missing:
        raise AssertionError("%s exited %d without a line for %s\nstderr:\n%s"
                             % (" ".join(command), r.returncode, missing, stderr))
    return out


def decode_formatting(value, escape):
    """HAPI's value with the sequences it keeps as sent decoded as yilian does."""
    if escape not in value:
        return value
    e = re.escape(escape)

    def replace(m):
        body = m.group(1)
        if body == ".br":
            return "\n"
        if body in ("H", "N"):
            return ""
        if body[0] == "X" and len(body) % 2 == 1:
            try:
                return bytes.fromhex(body[1:]).decode("utf-8", errors="replace")
            except ValueError:
                return m.group(0)
        return m.group(0)

    return re.sub(e + r"(\.br|H|N|X[0-9A-Fa-f]+)" + e, replace, value)


def compare(hapi, yilian):
    """Differences between the two lines of one file, as readable strings."""
    diffs = []
    if hapi.get("error") or yilian.get("error"):
        diffs.append("error: HAPI %r, yilian %r" % (hapi.get("error"), yilian.get("error")))
        return diffs
    if hapi["charset"] != yilian["charset"]:
        diffs.append("charset: HAPI %r, yilian %r" % (hapi["charset"], yilian["charset"]))
    for part in ("segments", "reps"):
        if hapi[part] != yilian[part]:
            diffs.append("%s: HAPI %s, yilian %s" % (part, json.dumps(hapi[part]), json.dumps(yilian[part])))
    hv, yv = hapi["values"], yilian["values"]
    encoding = hv.get("MSH[1]-2", "")
    escape = encoding[2] if len(encoding) >= 3 else "\\"
    for key in hv:
        if key not in yv:
            diffs.append("%s: only HAPI has it (%r)" % (key, hv[key]))
            continue
        want = decode_formatting(hv[key], escape)
        if want != yv[key]:
            note = "" if want == hv[key] else " (HAPI as sent: %r)" % hv[key]
            diffs.append("%s: HAPI %r, yilian %r%s" % (key, want, yv[key], note))
    for key in yv:
        if key not in hv:
            diffs.append("%s: only yilian has it (%r)" % (key, yv[key]))
    return diffs


class HapiOracleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.jar = build_hapi_jar()
        if not os.access(HL7_FIELDS, os.X_OK):
            raise AssertionError("%s is missing: build the hl7_fields target" % HL7_FIELDS)
        cls.index = corpus_index()
        cls.hapi = dump_corpus(["java", "-jar", cls.jar, "fields"])
        cls.yilian = dump_corpus([HL7_FIELDS])

    def test_the_corpus_is_generated_from_its_script_and_large_enough(self):
        r = subprocess.run([sys.executable, os.path.join(CORPUS, "generate.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(len(self.index), 40)

    def test_hapi_parses_every_message_of_the_corpus(self):
        errors = {f: line["error"] for f, line in self.hapi.items() if line["error"]}
        self.assertEqual(errors, {}, "HAPI cannot parse these corpus files (fix the corpus)")

    def test_yilian_reads_every_field_as_hapi_does(self):
        report = []
        for entry in self.index:
            name = entry["file"]
            diffs = compare(self.hapi[name], self.yilian[name])
            if diffs:
                report.append("%s (%s, %s):\n    %s" % (name, entry["hospital"], entry["bytes_charset"],
                                                       "\n    ".join(diffs)))
        compared = sum(len(line["values"]) for line in self.hapi.values())
        self.assertFalse(report, "yilian and HAPI disagree on %d of %d files (%d values compared):\n%s"
                         % (len(report), len(self.index), compared, "\n".join(report)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
