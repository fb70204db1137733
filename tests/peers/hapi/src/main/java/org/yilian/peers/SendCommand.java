package org.yilian.peers;

/*
 * `send` — HAPI as an independent MLLP client.
 *
 * Each FILE is sent, in order, over one HAPI client connection (an
 * ActiveConnection opened as HapiContext.newClient / ConnectionHub.attach opens
 * it, ActiveInitiator.sendAndReceive, MinLowerLayerProtocol honouring MSH-18;
 * reconnecting when HAPI closed it after an I/O error), and the answer HAPI
 * matched on MSA-2 == MSH-10 is reported. One JSON object per file, one per line:
 *
 *   {
 *     "file":           "<path as given>",
 *     "control_id":     "<MSH-10 of the message sent>",
 *     "msa1":           "AA" | "AE" | "AR" | "CA" | "CE" | "CR" | null,
 *     "msa2":           "<MSA-2 of the ACK>" | null,
 *     "ack_msh9":       "<MSH-9 of the ACK as sent, e.g. ACK^A01^ACK>" | null,
 *     "ack_control_id": "<MSH-10 of the ACK>" | null,
 *     "ack":            "<the ACK as received, segments ended by \r>" | null,
 *     "millis":         <send to ACK, ms>,
 *     "err":            null | "<why no ACK was received / the file could not be sent>"
 *   }
 *
 * Exit code 0 when every file got an ACK with MSA-1 AA or CA, else 1.
 *
 * The bytes on the wire are the file's bytes, unchanged: HAPI's Initiator
 * insists on a Message object (it reads MSH-10 from it to match the ACK) and
 * re-encodes it with the connection's parser, which would normalise the
 * message (drop trailing delimiters, re-escape). So the connection gets a
 * PipeParser whose encode(Message) returns the original text of the messages
 * this command parsed (newClient always uses the context's generic parser,
 * hence the connection is opened directly). HAPI's own LLP writer then encodes
 * that text with the charset of MSH-18 (or --default-charset), and the command
 * checks beforehand that this gives back exactly the file's bytes (error
 * otherwise, nothing sent).
 * The parse used only for MSH-10 is lenient (validation off; GenericMessage
 * fallback), so malformed content still goes out as it is.
 *
 * Enhanced mode (MSH-15/16): the first acknowledgement with a matching MSA-2
 * (the commit ACK) is reported; a later application ACK is ignored by HAPI's
 * receiver.
 *
 * TLS: --tls with --tls-ca (PEM bundle to trust; default: the JVM's trust
 * store), --tls-cert/--tls-key (client certificate chain and PKCS#8 key, PEM)
 * and --tls-no-verify-host (skip host name verification).
 */

import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.Connection;
import ca.uhn.hl7v2.app.ActiveConnection;
import ca.uhn.hl7v2.app.Initiator;
import ca.uhn.hl7v2.llp.MinLowerLayerProtocol;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.GenericModelClassFactory;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.util.StandardSocketFactory;
import ca.uhn.hl7v2.util.Terser;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.Charset;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

final class SendCommand {

    private SendCommand() {}

    /** A PipeParser that encodes the messages it was told about as their original text. */
    static final class RawTextParser extends PipeParser {
        private final Map<Message, String> originals = new IdentityHashMap<>();

        RawTextParser(HapiContext ctx) {
            super(ctx);
        }

        synchronized void remember(Message m, String text) {
            originals.put(m, text);
        }

        synchronized void forget(Message m) {
            originals.remove(m);
        }

        /** Remembers the text of what it parses too, so the ACK can be shown as received. */
        @Override
        public Message parse(String text) throws HL7Exception {
            Message m = super.parse(text);
            remember(m, text);
            return m;
        }

        synchronized String original(Message m) {
            return originals.get(m);
        }

        @Override
        public String encode(Message source) throws HL7Exception {
            synchronized (this) {
                String text = originals.get(source);
                if (text != null) return text;
            }
            return super.encode(source);
        }
    }

    static int run(HapiPeers.Args args, PrintStream out) throws Exception {
        args.requireFiles();
        String host = args.required("host");
        int port = args.integer("port", -1);
        if (port <= 0 || port > 65535) throw new HapiPeers.UsageException("--port is required (1-65535)");
        int timeoutMs = args.integer("timeout-ms", 30000);
        boolean tls = args.flag("tls");

        int failures = 0;
        try (HapiContext ctx = FieldsCommand.newContext()) {
            RawTextParser wireParser = new RawTextParser(ctx);
            // Only to find MSH-10 in messages the typed model rejects.
            PipeParser genericParser = new PipeParser(new GenericModelClassFactory());
            genericParser.getParserConfiguration().setValidating(false);
            genericParser.setValidationContext(ca.uhn.hl7v2.validation.impl.ValidationContextFactory.noValidation());

            // The LLP's charset (used when MSH-18 is empty or unknown to HAPI) is
            // fixed when a connection opens: reconnect when it changes.
            MinLowerLayerProtocol llp = new MinLowerLayerProtocol(true, true);
            Charset connCharset = null;
            StandardSocketFactory sockets = tls ? tlsSockets(args) : new StandardSocketFactory();

            Connection conn = null;
            try {
                for (int i = 0; i < args.files.size(); i++) {
                    String file = args.files.get(i);
                    Charset fallback = args.charsetFor(i);
                    Map<String, Object> line = new LinkedHashMap<>();
                    line.put("file", file);
                    line.put("control_id", null);
                    line.put("msa1", null);
                    line.put("msa2", null);
                    line.put("ack_msh9", null);
                    line.put("ack_control_id", null);
                    line.put("ack", null);
                    line.put("millis", null);
                    line.put("err", null);
                    Message m = null;
                    try {
                        Hl7Files.Decoded d = Hl7Files.read(file, fallback);
                        checkWireBytes(d, fallback);
                        try {
                            m = wireParser.parse(d.text);
                        } catch (HL7Exception | RuntimeException typed) {
                            m = genericParser.parse(d.text);
                        }
                        line.put("control_id", new Terser(m).get("/MSH-10"));
                        wireParser.remember(m, d.text);
                        if (conn != null && !fallback.equals(connCharset)) {
                            conn.close();
                            conn = null;
                        }
                        if (conn == null || !conn.isOpen()) {
                            llp.setCharset(fallback);
                            connCharset = fallback;
                            // What ConnectionHub.attach does (ConnectionFactory.open), with
                            // our parser and LLP instance, which attach cannot take.
                            Socket socket = tls ? sockets.createTlsSocket() : sockets.createSocket();
                            socket.connect(new InetSocketAddress(host, port), timeoutMs);
                            ActiveConnection c = new ActiveConnection(wireParser, llp, socket, ctx.getExecutorService());
                            c.activate();
                            conn = c;
                        }
                        Initiator initiator = conn.getInitiator();
                        initiator.setTimeout(timeoutMs, TimeUnit.MILLISECONDS);
                        long t0 = System.nanoTime();
                        Message ack = initiator.sendAndReceive(m);
                        line.put("millis", (System.nanoTime() - t0) / 1_000_000L);
                        String ackText = wireParser.original(ack);
                        wireParser.forget(ack);
                        if (ackText == null) ackText = ack.encode();
                        Terser t = new Terser(ack);
                        line.put("msa1", t.get("/MSA-1"));
                        line.put("msa2", t.get("/MSA-2"));
                        line.put("ack_msh9", rawMsh9(ackText));
                        line.put("ack_control_id", t.get("/MSH-10"));
                        line.put("ack", ackText);
                        String msa1 = (String) line.get("msa1");
                        if (!"AA".equals(msa1) && !"CA".equals(msa1)) failures++;
                    } catch (Exception e) {
                        failures++;
                        line.put("err", e.getClass().getSimpleName() + ": " + e.getMessage());
                    } finally {
                        if (m != null) wireParser.forget(m);
                    }
                    out.println(Json.write(line));
                    out.flush();
                }
            } finally {
                if (conn != null) conn.close();
            }
        }
        return failures == 0 ? 0 : 1;
    }

    /**
     * HAPI's ExtendedMinLLPWriter encodes the text with MSH-18's charset when
     * HAPI's table knows the name, else with the LLP's default: make sure that
     * reproduces the file's bytes.
     */
    static void checkWireBytes(Hl7Files.Decoded d, Charset fallback) throws Hl7Files.DecodeException {
        String javaName = Hl7Files.TABLE_0211.get(d.msh18);
        Charset wire = javaName != null ? Charset.forName(javaName) : fallback;
        byte[] encoded = d.text.getBytes(wire);
        if (!Arrays.equals(encoded, d.bytes)) {
            throw new Hl7Files.DecodeException("HAPI's writer would send this file as " + wire.name()
                    + " (MSH-18 '" + d.msh18 + "'), which changes its bytes; pass --default-charset "
                    + d.charset.name());
        }
    }

    /** MSH-9 of the ACK as sent (components and all), from its text. */
    static String rawMsh9(String ack) {
        if (ack.length() < 4) return null;
        String msh = ack.split("\r", 2)[0];
        String sep = String.valueOf(msh.charAt(3));
        String[] f = msh.split(java.util.regex.Pattern.quote(sep), -1);
        // f[0] = "MSH", f[1] = MSH-2, so MSH-n is f[n-1].
        return f.length > 8 ? f[8] : null;
    }

    static StandardSocketFactory tlsSockets(HapiPeers.Args args) throws Exception {
        KeyStore trust = null;
        String ca = args.get("tls-ca", null);
        if (ca != null) {
            trust = KeyStore.getInstance(KeyStore.getDefaultType());
            trust.load(null, null);
            int i = 0;
            for (Certificate c : readCertificates(ca)) trust.setCertificateEntry("ca" + (i++), c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);  // null: the JVM's default trust store

        KeyManagerFactory kmf = null;
        String cert = args.get("tls-cert", null);
        String key = args.get("tls-key", null);
        if ((cert == null) != (key == null)) {
            throw new HapiPeers.UsageException("--tls-cert and --tls-key go together");
        }
        if (cert != null) {
            KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
            ks.load(null, null);
            char[] pw = "yilian".toCharArray();
            List<Certificate> chain = new ArrayList<>(readCertificates(cert));
            ks.setKeyEntry("client", readPrivateKey(key), pw, chain.toArray(new Certificate[0]));
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
        }
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        boolean verifyHost = !args.flag("tls-no-verify-host");

        return new StandardSocketFactory() {
            @Override
            public Socket createTlsSocket() throws IOException {
                SSLSocket s = (SSLSocket) ssl.getSocketFactory().createSocket();
                s.setKeepAlive(true);
                s.setTcpNoDelay(true);
                s.setSoTimeout(getAcceptedSocketTimeout());
                if (verifyHost) {
                    SSLParameters p = s.getSSLParameters();
                    p.setEndpointIdentificationAlgorithm("HTTPS");
                    s.setSSLParameters(p);
                }
                return s;
            }
        };
    }

    static Collection<? extends Certificate> readCertificates(String path) throws IOException, GeneralSecurityException {
        byte[] pem = Files.readAllBytes(Path.of(path));
        Collection<? extends Certificate> certs = CertificateFactory.getInstance("X.509")
                .generateCertificates(new ByteArrayInputStream(pem));
        if (certs.isEmpty()) throw new GeneralSecurityException(path + ": no certificate found");
        return certs;
    }

    static PrivateKey readPrivateKey(String path) throws IOException, GeneralSecurityException {
        String pem = Files.readString(Path.of(path));
        String begin = "-----BEGIN PRIVATE KEY-----";
        int b = pem.indexOf(begin);
        int e = pem.indexOf("-----END PRIVATE KEY-----");
        if (b < 0 || e < 0) {
            throw new GeneralSecurityException(path + ": expected an unencrypted PKCS#8 PEM key (BEGIN PRIVATE KEY);"
                    + " convert with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8");
        }
        byte[] der = Base64.getMimeDecoder().decode(pem.substring(b + begin.length(), e));
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
        for (String alg : new String[] {"RSA", "EC", "Ed25519", "EdDSA"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(spec);
            } catch (GeneralSecurityException ignored) {
                // try the next algorithm
            }
        }
        throw new GeneralSecurityException(path + ": unsupported private key algorithm");
    }
}
