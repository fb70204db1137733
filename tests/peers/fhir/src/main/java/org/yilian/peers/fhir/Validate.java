package org.yilian.peers.fhir;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Validates FHIR R4 JSON files with HAPI FHIR's instance validator against the
 * R4 core structure definitions, value sets and code systems it bundles (no
 * terminology server, no network).
 *
 * <pre>java -jar yilian-fhir-validator.jar FILE...</pre>
 *
 * One JSON line per file on stdout:
 * {"file":..., "resourceType":..., "errors":N, "warnings":N, "messages":[{"severity","location","message"}]}
 * (errors count severity error and fatal; messages list every issue of
 * severity warning or above). Exit status 0 only when no file has an error.
 * Code systems the validator does not know (yilian's urn:yilian:* systems) are
 * reported as warnings or information, not errors, by the validator itself.
 */
public final class Validate {
  private Validate() {}

  public static void main(String[] args) throws Exception {
    if (args.length == 0) {
      System.err.println("usage: java -jar yilian-fhir-validator.jar FILE...");
      System.exit(2);
    }
    FhirContext ctx = FhirContext.forR4();
    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    FhirValidator validator = ctx.newValidator().registerValidatorModule(module);

    boolean ok = true;
    for (String arg : args) {
      Path file = Path.of(arg);
      String text = Files.readString(file, StandardCharsets.UTF_8);
      ValidationResult result = validator.validateWithResult(text);
      int errors = 0;
      int warnings = 0;
      StringBuilder messages = new StringBuilder();
      for (SingleValidationMessage m : result.getMessages()) {
        ResultSeverityEnum s = m.getSeverity();
        if (s == ResultSeverityEnum.ERROR || s == ResultSeverityEnum.FATAL) {
          errors++;
        } else if (s == ResultSeverityEnum.WARNING) {
          warnings++;
        } else {
          continue;
        }
        if (messages.length() > 0) messages.append(',');
        messages
            .append("{\"severity\":")
            .append(quote(s.getCode()))
            .append(",\"location\":")
            .append(quote(m.getLocationString()))
            .append(",\"message\":")
            .append(quote(m.getMessage()))
            .append('}');
      }
      if (errors > 0) ok = false;
      System.out.println(
          "{\"file\":"
              + quote(file.toString())
              + ",\"resourceType\":"
              + quote(resourceType(ctx, text))
              + ",\"errors\":"
              + errors
              + ",\"warnings\":"
              + warnings
              + ",\"messages\":["
              + messages
              + "]}");
    }
    System.exit(ok ? 0 : 1);
  }

  private static String resourceType(FhirContext ctx, String text) {
    try {
      return ctx.newJsonParser().parseResource(text).fhirType();
    } catch (RuntimeException e) {
      return "";
    }
  }

  private static String quote(String s) {
    if (s == null) return "null";
    StringBuilder out = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> {
          if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
          else out.append(c);
        }
      }
    }
    return out.append('"').toString();
  }
}
