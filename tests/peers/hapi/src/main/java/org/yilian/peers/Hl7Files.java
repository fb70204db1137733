package org.yilian.peers;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.Charset;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.IllegalCharsetNameException;
import java.nio.charset.UnsupportedCharsetException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads one HL7 v2 message file (one message, segments ended by CR, no MLLP
 * framing) and decodes it to a Java string the way a HAPI receiver would:
 * MSH-18 is read from the raw bytes (its value is ASCII), mapped through HL7
 * table 0211, and the whole message is decoded with that charset; an empty
 * MSH-18 means the caller's default.
 *
 * <p>The table is HAPI's own (ca.uhn.hl7v2.llp.HL7Charsets, package-private in
 * hapi-base, so copied here); names it does not know are tried as Java charset
 * names, which covers the common non-table spellings "GBK", "GB2312" and
 * "UTF-8" that yilian also accepts. Bytes that are invalid in the charset are an
 * error (HAPI's LLP would silently replace them; an oracle must not).
 */
final class Hl7Files {

    private Hl7Files() {}

    /** HL7 table 0211 -> Java charset, as in HAPI 2.x's HL7Charsets. */
    static final Map<String, String> TABLE_0211 = new LinkedHashMap<>();

    static {
        TABLE_0211.put("ASCII", "US-ASCII");
        TABLE_0211.put("8859/1", "ISO-8859-1");
        TABLE_0211.put("8859/2", "ISO-8859-2");
        TABLE_0211.put("8859/3", "ISO-8859-3");
        TABLE_0211.put("8859/4", "ISO-8859-4");
        TABLE_0211.put("8859/5", "ISO-8859-5");
        TABLE_0211.put("8859/6", "ISO-8859-6");
        TABLE_0211.put("8859/7", "ISO-8859-7");
        TABLE_0211.put("8859/8", "ISO-8859-8");
        TABLE_0211.put("8859/9", "ISO-8859-9");
        TABLE_0211.put("8859/15", "ISO-8859-15");
        TABLE_0211.put("ISO IR6", "US-ASCII");
        TABLE_0211.put("GB 18030-2000", "GB18030");
        TABLE_0211.put("KS X 1001", "EUC-KR");
        TABLE_0211.put("CNS 11643-1992", "x-EUC-TW");
        TABLE_0211.put("BIG-5", "Big5");
        TABLE_0211.put("UNICODE", "UTF-8");
        TABLE_0211.put("UNICODE UTF-8", "UTF-8");
        TABLE_0211.put("UNICODE UTF-16", "UTF-16");
        TABLE_0211.put("UNICODE UTF-32", "UTF-32");
    }

    static final class Decoded {
        final String path;
        final byte[] bytes;
        final String msh18;      // as found in the bytes ("" when empty)
        final Charset charset;   // what the text was decoded with
        final String text;

        Decoded(String path, byte[] bytes, String msh18, Charset charset, String text) {
            this.path = path;
            this.bytes = bytes;
            this.msh18 = msh18;
            this.charset = charset;
            this.text = text;
        }
    }

    static final class DecodeException extends Exception {
        private static final long serialVersionUID = 1L;

        DecodeException(String message) {
            super(message);
        }
    }

    static Charset defaultCharset(String name) throws HapiPeers.UsageException {
        try {
            return Charset.forName(name);
        } catch (IllegalCharsetNameException | UnsupportedCharsetException e) {
            throw new HapiPeers.UsageException("--default-charset: unknown charset '" + name + "'");
        }
    }

    static Decoded read(String path, Charset fallback) throws IOException, DecodeException {
        byte[] bytes = Files.readAllBytes(Path.of(path));
        return decode(path, bytes, fallback);
    }

    static Decoded decode(String path, byte[] bytes, Charset fallback) throws DecodeException {
        String msh18 = msh18(bytes);
        Charset cs = fallback;
        if (!msh18.isEmpty()) cs = charsetFor(msh18);
        CharsetDecoder decoder = cs.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        try {
            CharBuffer chars = decoder.decode(in);
            return new Decoded(path, bytes, msh18, cs, chars.toString());
        } catch (CharacterCodingException e) {
            throw new DecodeException("bytes invalid in " + cs.name() + " near byte " + in.position()
                    + " (" + e.getMessage() + ")");
        }
    }

    static Charset charsetFor(String msh18) throws DecodeException {
        String javaName = TABLE_0211.get(msh18);
        if (javaName == null) javaName = msh18;
        try {
            return Charset.forName(javaName);
        } catch (IllegalCharsetNameException | UnsupportedCharsetException e) {
            throw new DecodeException("MSH-18 '" + msh18 + "' is neither an HL7 table 0211 name nor a Java charset");
        }
    }

    /**
     * MSH-18's first repetition, read from the raw bytes with MSH-1/MSH-2's
     * delimiters; non-ASCII bytes are dropped as HAPI's CharSetUtil does.
     */
    static String msh18(byte[] b) {
        if (b.length < 8 || b[0] != 'M' || b[1] != 'S' || b[2] != 'H') return "";
        byte fieldSep = b[3];
        byte repSep = b[5];
        byte compSep = b[4];
        int field = 2;  // b[3] is MSH-1, so the bytes after it are MSH-2
        StringBuilder value = new StringBuilder();
        boolean inRepetition = true;
        boolean inComponent = true;
        for (int i = 4; i < b.length; i++) {
            byte c = b[i];
            if (c == '\r' || c == '\n') break;
            if (c == fieldSep) {
                field++;
                if (field > 18) break;
                continue;
            }
            if (field != 18) continue;
            if (c == repSep) inRepetition = false;
            if (c == compSep) inComponent = false;
            if (inRepetition && inComponent && c > 0 && c < 127) value.append((char) c);
        }
        return value.toString().trim();
    }
}
