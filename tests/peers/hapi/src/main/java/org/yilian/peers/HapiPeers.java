package org.yilian.peers;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * yilian's HAPI HL7 v2 test peer: an HL7 implementation that shares no code with
 * yilian, used by the tests as an independent client and as a parsing oracle.
 *
 * <pre>
 * java -jar yilian-hapi-peers.jar send   --host H --port P [--timeout-ms N] [--default-charset CS]
 *                                        [--tls [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] [--tls-no-verify-host]] FILE...
 * java -jar yilian-hapi-peers.jar fields [--default-charset CS] FILE...
 * java -jar yilian-hapi-peers.jar bench  [--iterations N] [--warmup-seconds S] [--default-charset CS] FILE...
 * </pre>
 *
 * <p>Every subcommand prints JSON lines on stdout (schemas: {@link SendCommand},
 * {@link FieldsCommand}, {@link BenchCommand}); diagnostics go to stderr. Exit
 * codes: 0 success, 1 a message failed (NACK, parse error, I/O error), 2 bad
 * usage.
 *
 * <p>Charsets: a file's bytes are decoded with the charset its MSH-18 names (HL7
 * table 0211 as HAPI maps it, plus the Java names such as GBK), or with
 * {@code --default-charset} (a Java charset name, default UTF-8) when MSH-18 is
 * empty. See {@link Hl7Files}.
 */
public final class HapiPeers {

    private HapiPeers() {}

    public static void main(String[] argv) {
        // HAPI logs through slf4j; keep its chatter (version banner, per-message
        // debug) off stdout, which carries the JSON lines.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel",
                System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"));
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        int code;
        try {
            code = run(argv, out);
        } catch (UsageException e) {
            System.err.println("yilian-hapi-peers: " + e.getMessage());
            System.err.println(USAGE);
            code = 2;
        } catch (Exception e) {
            System.err.println("yilian-hapi-peers: " + e);
            e.printStackTrace(System.err);
            code = 1;
        }
        out.flush();
        // HAPI's connection hub keeps non-daemon executor threads alive.
        System.exit(code);
    }

    static final String USAGE = String.join("\n",
            "usage: java -jar yilian-hapi-peers.jar COMMAND [OPTIONS] FILE...",
            "  (--default-charset CS applies to the FILEs after it; default UTF-8)",
            "  send   --host H --port P [--timeout-ms N] [--default-charset CS]",
            "         [--tls] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] [--tls-no-verify-host]",
            "  fields [--default-charset CS]",
            "  bench  [--iterations N] [--warmup-seconds S] [--default-charset CS]");

    static int run(String[] argv, PrintStream out) throws Exception {
        if (argv.length == 0) throw new UsageException("missing command");
        String command = argv[0];
        String[] rest = Arrays.copyOfRange(argv, 1, argv.length);
        switch (command) {
            case "send":
                return SendCommand.run(Args.parse(rest, Set.of("host", "port", "timeout-ms", "default-charset",
                        "tls-ca", "tls-cert", "tls-key"), Set.of("tls", "tls-no-verify-host")), out);
            case "fields":
                return FieldsCommand.run(Args.parse(rest, Set.of("default-charset"), Set.of()), out);
            case "bench":
                return BenchCommand.run(Args.parse(rest, Set.of("iterations", "warmup-seconds", "default-charset"),
                        Set.of()), out);
            case "-h":
            case "--help":
            case "help":
                System.err.println(USAGE);
                return 0;
            default:
                throw new UsageException("unknown command '" + command + "'");
        }
    }

    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    /**
     * Options ("--name value", "--name=value" or "--flag") and file names, in
     * any order. --default-charset may be given several times: each file is read
     * with the one last given before it (UTF-8 when none), so one run can cover
     * senders with different profile defaults.
     */
    static final class Args {
        final Map<String, String> options = new HashMap<>();
        final List<String> files = new ArrayList<>();
        final List<String> fileCharsets = new ArrayList<>();

        static Args parse(String[] argv, Set<String> valued, Set<String> flags) throws UsageException {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String s = argv[i];
                if (s.startsWith("--")) {
                    String name = s.substring(2);
                    String value = null;
                    int eq = name.indexOf('=');
                    if (eq >= 0) {
                        value = name.substring(eq + 1);
                        name = name.substring(0, eq);
                    }
                    if (flags.contains(name)) {
                        if (value != null) throw new UsageException("--" + name + " takes no value");
                        a.options.put(name, "true");
                    } else if (valued.contains(name)) {
                        if (value == null) {
                            if (i + 1 >= argv.length) throw new UsageException("--" + name + " needs a value");
                            value = argv[++i];
                        }
                        a.options.put(name, value);
                    } else {
                        throw new UsageException("unknown option --" + name);
                    }
                } else {
                    a.files.add(s);
                    a.fileCharsets.add(a.options.getOrDefault("default-charset", "UTF-8"));
                }
            }
            return a;
        }

        String get(String name, String fallback) {
            return options.getOrDefault(name, fallback);
        }

        boolean flag(String name) {
            return options.containsKey(name);
        }

        int integer(String name, int fallback) throws UsageException {
            String v = options.get(name);
            if (v == null) return fallback;
            try {
                return Integer.parseInt(v);
            } catch (NumberFormatException e) {
                throw new UsageException("--" + name + " wants an integer, got '" + v + "'");
            }
        }

        double number(String name, double fallback) throws UsageException {
            String v = options.get(name);
            if (v == null) return fallback;
            try {
                return Double.parseDouble(v);
            } catch (NumberFormatException e) {
                throw new UsageException("--" + name + " wants a number, got '" + v + "'");
            }
        }

        String required(String name) throws UsageException {
            String v = options.get(name);
            if (v == null) throw new UsageException("--" + name + " is required");
            return v;
        }

        void requireFiles() throws UsageException {
            if (files.isEmpty()) throw new UsageException("no FILE given");
        }

        /** The default charset for file i (see the class comment). */
        java.nio.charset.Charset charsetFor(int i) throws UsageException {
            return Hl7Files.defaultCharset(fileCharsets.get(i));
        }
    }
}
