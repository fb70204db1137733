package org.yilian.peers;

/*
 * `bench` — HAPI PipeParser throughput on a corpus, the baseline yilian's parse
 * + map benchmark is compared with (same files, same machine, same run).
 *
 * The files are read and decoded to strings first (charset conversion is not
 * timed: HAPI's LLP does it before the parser sees the text). Then the whole
 * corpus is parsed repeatedly for --warmup-seconds (default 10) of the
 * parsing thread's CPU time so the JIT has compiled the hot paths, and then --iterations times (default 200) on the
 * clock; each parse is followed by a Terser read of MSH-10 so the work cannot be
 * optimised away. One JSON line on stdout:
 *
 *   {"parser":"hapi-pipeparser","hapi_version":"2.6.0","java_version":"17...",
 *    "files":46,"bytes_per_pass":N,"iterations":200,"warmup_seconds":10.0,
 *    "warmup_passes":N,"messages":9200,"seconds":1.23,"msgs_per_sec":7479.6,
 *    "mb_per_sec":12.3,"cpu_seconds":1.2,"msgs_per_cpu_sec":7600.0,"process_cpu_seconds":1.5,
 *    "errors":0}
 *
 * "messages" = files x iterations; files HAPI cannot parse are counted in
 * "errors" (once per file, found in a first pass) and left out of the timing.
 * Single-threaded: the figure is per core. "seconds" is wall-clock time;
 * "cpu_seconds" is the parsing thread's CPU time (ThreadMXBean), the fairer
 * figure on a shared machine where the thread may not get a whole core (the
 * JIT and GC threads are not in it; "process_cpu_seconds" is the whole JVM's
 * CPU time over the same interval, garbage collection included).
 */

import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.VersionLogger;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.util.Terser;

import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

final class BenchCommand {

    private BenchCommand() {}

    static int run(HapiPeers.Args args, PrintStream out) throws Exception {
        args.requireFiles();
        int iterations = args.integer("iterations", 200);
        double warmupSeconds = args.number("warmup-seconds", 10.0);
        if (iterations <= 0) throw new HapiPeers.UsageException("--iterations must be positive");

        try (HapiContext ctx = FieldsCommand.newContext()) {
            PipeParser parser = ctx.getPipeParser();
            List<String> texts = new ArrayList<>();
            long bytes = 0;
            int errors = 0;
            for (int i = 0; i < args.files.size(); i++) {
                String file = args.files.get(i);
                try {
                    Hl7Files.Decoded d = Hl7Files.read(file, args.charsetFor(i));
                    parser.parse(d.text);
                    texts.add(d.text);
                    bytes += d.text.getBytes(StandardCharsets.UTF_8).length;
                } catch (Exception e) {
                    errors++;
                    System.err.println("bench: skipping " + file + ": " + e.getMessage());
                }
            }
            if (texts.isEmpty()) throw new IllegalStateException("no file could be parsed");

            // Warm-up is measured in this thread's CPU time: on a loaded
            // machine wall-clock seconds may hold only a few passes.
            ThreadMXBean threads = ManagementFactory.getThreadMXBean();
            long sink = 0;
            long warmupPasses = 0;
            long warmupEnd = threads.getCurrentThreadCpuTime() + (long) (warmupSeconds * 1e9);
            do {
                sink += pass(parser, texts);
                warmupPasses++;
            } while (threads.getCurrentThreadCpuTime() < warmupEnd);

            long p0 = processCpuNanos();
            long c0 = threads.getCurrentThreadCpuTime();
            long t0 = System.nanoTime();
            for (int i = 0; i < iterations; i++) sink += pass(parser, texts);
            double seconds = (System.nanoTime() - t0) / 1e9;
            double cpuSeconds = (threads.getCurrentThreadCpuTime() - c0) / 1e9;
            double processCpuSeconds = (processCpuNanos() - p0) / 1e9;

            long messages = (long) texts.size() * iterations;
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("parser", "hapi-pipeparser");
            line.put("hapi_version", VersionLogger.getVersion());
            line.put("java_version", System.getProperty("java.version"));
            line.put("files", texts.size());
            line.put("bytes_per_pass", bytes);
            line.put("iterations", iterations);
            line.put("warmup_seconds", warmupSeconds);
            line.put("warmup_passes", warmupPasses);
            line.put("messages", messages);
            line.put("seconds", seconds);
            line.put("msgs_per_sec", messages / seconds);
            line.put("mb_per_sec", bytes * (double) iterations / seconds / 1e6);
            line.put("cpu_seconds", cpuSeconds);
            line.put("msgs_per_cpu_sec", messages / cpuSeconds);
            line.put("process_cpu_seconds", processCpuSeconds);
            line.put("errors", errors);
            out.println(Json.write(line));
            if (sink == 42) System.err.println();  // keeps `sink` alive
            return errors == 0 ? 0 : 1;
        }
    }

    /** CPU time of the whole JVM (parsing thread plus GC and JIT threads). */
    static long processCpuNanos() {
        java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean) {
            return ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime();
        }
        return 0;
    }

    static long pass(PipeParser parser, List<String> texts) throws HL7Exception {
        long sink = 0;
        for (String t : texts) {
            Message m = parser.parse(t);
            String id = new Terser(m).get("/MSH-10");
            sink += id == null ? 0 : id.length();
        }
        return sink;
    }
}
