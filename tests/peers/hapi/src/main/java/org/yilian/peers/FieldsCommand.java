package org.yilian.peers;

/*
 * `fields` — HAPI's reading of a fixed list of fields, the oracle for yilian's
 * parser (tests/peers/hl7_fields.cc prints the same schema from yilian's parser;
 * tests/e2e/hl7v2_oracle_test.py compares the two).
 *
 * One JSON object per input file, one per line, in argument order:
 *
 *   {
 *     "file":     "<the path as given>",
 *     "charset":  "<charset the bytes were decoded with: Java name, e.g. UTF-8, GBK, GB18030>",
 *     "error":    null | "<why the file could not be read, decoded or parsed>",
 *     "segments": {"MSH": 1, "PID": 1, "OBX": 3, ...},   // every segment id present, with its count
 *     "reps":     {"PID[1]-3": 3, "PID[1]-5": 2, ...},    // repetition count of each field marked "*" below
 *     "values":   {"MSH[1]-1": "|", "MSH[1]-2": "^~\\&", "MSH[1]-9[1].1.1": "ADT", ...}
 *   }
 *
 * Keys of "values" are SEG[k]-F[r].C.S, all 1-based: k = occurrence of the
 * segment id in the message, r = repetition, C = component, S = subcomponent;
 * except MSH-1 and MSH-2 (the delimiters themselves), keyed "MSH[1]-1" and
 * "MSH[1]-2". A value is the decoded text of that subcomponent: escape sequences
 * decoded as HAPI decodes them (\F\ \S\ \T\ \R\ \E\; HAPI keeps formatting and
 * hex sequences such as \.br\ \H\ \Xhh\ as sent), "" when absent, and the HL7 null
 * as the two characters "" (HAPI reports it that way; yilian's is_null()).
 *
 * For each segment id in SPEC, every occurrence gets every listed key; fields
 * marked "*" get the keys for every repetition present (and a "reps" entry),
 * the others for the first repetition only. Segments are taken from HAPI's
 * parsed structure (walked depth-first, nonstandard/Z segments included),
 * which is message order for a message that parses. Segments without any value
 * are skipped: HAPI creates such placeholders for missing required segments,
 * and cannot tell them from a sent empty segment ("MRG|"), so keep those out of
 * the corpus.
 *
 * HAPI setup: PipeParser from a DefaultHapiContext with validation off; the
 * model classes come from MSH-12's version (hapi-structures-v23 ... v28),
 * unknown structures fall back to GenericMessage.
 */

import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.model.Group;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.model.Segment;
import ca.uhn.hl7v2.model.Structure;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

final class FieldsCommand {

    private FieldsCommand() {}

    /** One field to report: segment, field number, all repetitions or the first, components "c.s". */
    static final class FieldSpec {
        final String segment;
        final int field;
        final boolean allReps;
        final int[][] components;  // {component, subcomponent}

        FieldSpec(String segment, int field, boolean allReps, int[][] components) {
            this.segment = segment;
            this.field = field;
            this.allReps = allReps;
            this.components = components;
        }
    }

    /*
     * The fixed field list. Keep in sync with kSpec in tests/peers/hl7_fields.cc
     * (the oracle test fails on any key present on one side only).
     * Format: "SEG FIELD REPS C.S[,C.S...]" with REPS "1" (first repetition) or
     * "*" (every repetition).
     */
    static final String[] SPEC_TEXT = {
        "MSH 3 1 1.1", "MSH 4 1 1.1", "MSH 9 1 1.1,2.1,3.1", "MSH 10 1 1.1", "MSH 12 1 1.1,2.1",
        "MSH 18 1 1.1",
        "PID 3 * 1.1,4.1,4.2,5.1", "PID 5 * 1.1,2.1,7.1,8.1", "PID 7 1 1.1", "PID 8 1 1.1",
        "PID 11 1 1.1,3.1", "PID 13 1 1.1",
        "PV1 2 1 1.1", "PV1 3 1 1.1,4.1", "PV1 19 1 1.1",
        "MRG 1 * 1.1,4.1",
        "ORC 1 1 1.1", "ORC 2 1 1.1", "ORC 3 1 1.1", "ORC 5 1 1.1",
        "OBR 2 1 1.1", "OBR 3 1 1.1", "OBR 4 1 1.1,2.1,3.1", "OBR 18 1 1.1", "OBR 20 1 1.1",
        "OBR 24 1 1.1", "OBR 25 1 1.1",
        "IPC 1 1 1.1", "IPC 3 1 1.1", "IPC 5 1 1.1", "IPC 9 1 1.1",
        "SCH 1 1 1.1", "SCH 2 1 1.1", "SCH 25 1 1.1",
        "TQ1 7 1 1.1",
        "AIS 3 1 1.1,2.1,3.1", "AIG 3 1 1.1,2.1", "AIG 4 1 1.1", "AIL 3 1 1.1,4.1",
        "AIP 3 1 1.1,2.1", "AIP 4 1 1.1",
        "RF1 1 1 1.1,2.1", "RF1 3 1 1.1", "RF1 6 1 1.1,2.1", "RF1 10 1 1.1",
        "PRD 1 1 1.1", "PRD 2 1 1.1,2.1", "PRD 7 1 1.1",
        "DG1 3 1 1.1,2.1,3.1",
        "OBX 2 1 1.1", "OBX 3 1 1.1,2.1", "OBX 5 1 1.1,2.1,5.1", "OBX 6 1 1.1", "OBX 8 1 1.1",
        "OBX 11 1 1.1",
        "NTE 3 1 1.1",
        "MSA 1 1 1.1", "MSA 2 1 1.1",
        "ZPI 1 1 1.1", "ZPI 2 1 1.1", "ZDS 1 1 1.1",
    };

    static final List<FieldSpec> SPEC = parseSpec(SPEC_TEXT);

    static List<FieldSpec> parseSpec(String[] lines) {
        List<FieldSpec> out = new ArrayList<>();
        for (String line : lines) {
            String[] p = line.split(" ");
            String[] comps = p[3].split(",");
            int[][] cs = new int[comps.length][];
            for (int i = 0; i < comps.length; i++) {
                String[] c = comps[i].split("\\.");
                cs[i] = new int[] {Integer.parseInt(c[0]), Integer.parseInt(c[1])};
            }
            out.add(new FieldSpec(p[0], Integer.parseInt(p[1]), p[2].equals("*"), cs));
        }
        return out;
    }

    static HapiContext newContext() {
        HapiContext ctx = new DefaultHapiContext();
        ctx.setValidationContext(ValidationContextFactory.noValidation());
        ctx.getParserConfiguration().setValidating(false);
        return ctx;
    }

    static int run(HapiPeers.Args args, PrintStream out) throws Exception {
        args.requireFiles();
        int failures = 0;
        try (HapiContext ctx = newContext()) {
            PipeParser parser = ctx.getPipeParser();
            for (int i = 0; i < args.files.size(); i++) {
                Map<String, Object> line = dump(parser, args.files.get(i), args.charsetFor(i));
                if (line.get("error") != null) failures++;
                out.println(Json.write(line));
            }
        }
        return failures == 0 ? 0 : 1;
    }

    static Map<String, Object> dump(PipeParser parser, String file, Charset fallback) {
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("file", file);
        line.put("charset", null);
        line.put("error", null);
        Map<String, Object> segmentCounts = new LinkedHashMap<>();
        Map<String, Object> reps = new LinkedHashMap<>();
        Map<String, Object> values = new LinkedHashMap<>();
        line.put("segments", segmentCounts);
        line.put("reps", reps);
        line.put("values", values);
        try {
            Hl7Files.Decoded d = Hl7Files.read(file, fallback);
            line.put("charset", d.charset.name());
            Message m = parser.parse(d.text);
            List<Segment> segments = new ArrayList<>();
            collect(m, segments);
            Map<String, Integer> seen = new LinkedHashMap<>();
            for (Segment s : segments) {
                String id = s.getName();
                int k = seen.merge(id, 1, Integer::sum);
                segmentCounts.put(id, k);
                if (id.equals("MSH") && k == 1) {
                    values.put("MSH[1]-1", nz(Terser.get(s, 1, 0, 1, 1)));
                    values.put("MSH[1]-2", nz(Terser.get(s, 2, 0, 1, 1)));
                }
                for (FieldSpec f : SPEC) {
                    if (!f.segment.equals(id)) continue;
                    int count = repetitionCount(s, f.field);
                    String base = id + "[" + k + "]-" + f.field;
                    if (f.allReps) reps.put(base, count);
                    int n = f.allReps ? count : 1;
                    for (int r = 0; r < n; r++) {
                        for (int[] c : f.components) {
                            String key = base + "[" + (r + 1) + "]." + c[0] + "." + c[1];
                            values.put(key, r < count ? nz(Terser.get(s, f.field, r, c[0], c[1])) : "");
                        }
                    }
                }
            }
        } catch (IOException | Hl7Files.DecodeException | HL7Exception | RuntimeException e) {
            line.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        return line;
    }

    /** Segments depth-first in structure order, skipping HAPI's empty placeholders. */
    static void collect(Group g, List<Segment> out) throws HL7Exception {
        for (String name : g.getNames()) {
            for (Structure s : g.getAll(name)) {
                if (s instanceof Segment) {
                    if (!s.isEmpty()) out.add((Segment) s);
                } else if (s instanceof Group) {
                    collect((Group) s, out);
                }
            }
        }
    }

    static int repetitionCount(Segment s, int field) throws HL7Exception {
        if (field > s.numFields()) return 0;
        return s.getField(field).length;
    }

    static String nz(String s) {
        return s == null ? "" : s;
    }
}
