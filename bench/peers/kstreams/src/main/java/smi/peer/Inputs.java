package smi.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Validation of the input payloads, as docs/contract.md and schemas/json/ state them: strict
 *  types, unknown fields ignored (kept in a service request), IDs and hex values accepted in
 *  either case and stored upper case. A message that fails raises {@link InvalidEvent}. */
final class Inputs {
    static final int MAX_BYTES = 64 * 1024;

    private static final Pattern EUI64 = Pattern.compile("[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}");
    private static final Pattern FIRMWARE = Pattern.compile("[0-9A-Fa-f]{8}");
    private static final Pattern HASH = Pattern.compile("[0-9A-Fa-f]{64}");
    private static final Pattern HEX_ID = Pattern.compile("[0-9A-Fa-f]{2,16}");
    private static final Pattern SR = Pattern.compile("[0-9]{1,2}(\\.[0-9]{1,2}){1,2}");
    private static final Pattern DIGITS = Pattern.compile("[0-9]+");
    private static final Pattern TIME = Pattern.compile(
            "(\\d{4})-(\\d{2})-(\\d{2})[Tt_ ](\\d{2}):(\\d{2})(?::(\\d{2})(?:[.,](\\d{1,9})\\d*)?)?"
                    + "(Z|z|[+-]\\d{2}(?::?\\d{2})?)?");
    static final Set<String> DEVICE_TYPES =
            Set.of("ESME", "GSME", "GPF", "CHF", "PPMID", "HCALCS", "IHD", "CAD");
    static final Set<String> STATUSES = Set.of("Pending", "Whitelisted", "InstalledNotCommissioned",
            "Commissioned", "Decommissioned", "Withdrawn", "Suspended", "Recovery", "Recovered",
            "NotApplicable");

    private Inputs() {}

    /** The validated, normalised payload of a message of contract topic {@code topic}. */
    static ObjectNode decode(String topic, byte[] value) throws InvalidEvent {
        if (value == null) {
            throw new InvalidEvent("the message has no value (a tombstone): expected a JSON object");
        }
        if (value.length > MAX_BYTES) {
            throw readable(topic, value, "the value is " + value.length + " bytes, over the "
                    + MAX_BYTES + "-byte limit");
        }
        JsonNode root;
        try {
            root = Json.parse(value);
        } catch (IOException e) {
            String reason = e instanceof com.fasterxml.jackson.core.JsonProcessingException j
                    ? j.getOriginalMessage() : e.getMessage();
            throw readable(topic, value, "not valid JSON (" + reason + ")");
        }
        if (root == null || !root.isObject()) {
            throw readable(topic, value, "expected a JSON object");
        }
        Check check = new Check((ObjectNode) root.deepCopy());
        switch (topic) {
            case Topics.CPL -> cpl(check);
            case Topics.INVENTORY -> inventory(check);
            case Topics.REQUESTS -> request(check);
            case Topics.RESPONSES -> response(check);
            default -> throw new IllegalArgumentException("no input topic " + topic);
        }
        String error = check.error();
        if (error != null) {
            throw readable(topic, value, error);
        }
        return check.node;
    }

    private static void cpl(Check c) {
        c.pattern("manufacturer", HEX_ID, true, true);
        c.pattern("model", HEX_ID, true, true);
        c.pattern("hardware_version", HEX_ID, true, true);
        c.pattern("firmware_version", FIRMWARE, true, true);
        c.pattern("firmware_hash", HASH, true, true);
        c.oneOf("status", Set.of("Active", "Removed"), true);
        c.time("at");
    }

    private static void inventory(Check c) {
        c.pattern("device_id", EUI64, true, true);
        c.oneOf("device_type", DEVICE_TYPES, true);
        c.literal("smets", Set.of(1, 2), true);
        c.pattern("manufacturer", HEX_ID, true, true);
        c.pattern("model", HEX_ID, true, true);
        c.pattern("hardware_version", HEX_ID, true, true);
        c.pattern("firmware_version", FIRMWARE, true, true);
        c.oneOf("status", STATUSES, true);
        c.pattern("supplier", EUI64, true, true);
        c.pattern("gpf_id", EUI64, true, false);
        c.oneOf("status_before_suspension", STATUSES, false);
        c.time("at");
        if (c.error() == null && "Suspended".equals(Json.text(c.node, "status_before_suspension"))) {
            c.fail("status_before_suspension cannot be Suspended: it is the status that leaving "
                    + "Suspended restores");
        }
    }

    private static void request(Check c) {
        c.string("request_id", 120, true);
        c.pattern("sr", SR, false, true);
        c.pattern("originator", EUI64, true, true);
        c.pattern("device_id", EUI64, true, true);
        c.pattern("firmware_hash", HASH, true, false);
        c.pattern("firmware_version", FIRMWARE, true, false);
        c.time("at");
        if (c.error() != null) {
            return;
        }
        ObjectNode n = c.node;
        String requestId = n.get("request_id").asText();
        String originator = n.get("originator").asText();
        String device = n.get("device_id").asText();
        if (!names(requestId, originator, device)) {
            String form = splitError(requestId, "request_id");
            c.fail(form != null ? form : "request_id '" + requestId + "' must be "
                    + "originator:device_id:counter (" + originator + ":" + device + ":...)");
            return;
        }
        String sr = n.get("sr").asText();
        if (sr.equals("11.3") && Json.text(n, "firmware_hash") == null) {
            c.fail("an SR11.3 needs firmware_hash, the image to activate");
        } else if (sr.equals("11.1") && Json.text(n, "firmware_version") == null) {
            c.fail("an SR11.1 needs firmware_version, the image it distributes");
        }
    }

    private static void response(Check c) {
        c.string("response_id", 120, true);
        c.pattern("sr", SR, false, true);
        c.pattern("device_id", EUI64, true, true);
        c.literal("outcome", Set.of(0, 1, 2, 3), false);
        c.pattern("firmware_version", FIRMWARE, true, false);
        c.pattern("gsme_id", EUI64, true, false);
        c.time("at");
        if (c.error() != null) {
            return;
        }
        ObjectNode n = c.node;
        String responseId = n.get("response_id").asText();
        String form = splitError(responseId, "response_id");
        if (form != null) {
            c.fail(form);
            return;
        }
        String device = n.get("device_id").asText();
        if (!responseId.substring(0, responseId.indexOf(':')).toUpperCase().equals(device)) {
            c.fail("response_id '" + responseId + "' must start with device_id " + device);
            return;
        }
        String sr = n.get("sr").asText();
        if ((sr.equals("11.2") || sr.equals("11.3")) && Json.text(n, "firmware_version") == null) {
            c.fail("an SR" + sr + " response needs firmware_version");
        } else if (sr.equals("11.3") && Json.text(n, "outcome") == null) {
            c.fail("an SR11.3 response needs outcome (0, 1, 2 or 3)");
        }
    }

    /** Whether {@code id} is {@code first:second:counter} in either case. */
    private static boolean names(String id, String first, String second) {
        int colon = id.lastIndexOf(':');
        if (colon < 0 || !DIGITS.matcher(id.substring(colon + 1)).matches()) {
            return false;
        }
        String head = id.substring(0, colon);
        return head.chars().allMatch(ch -> ch < 128) && head.toUpperCase().equals(first + ":" + second);
    }

    /** Why {@code id} is not of the form EUI-64:EUI-64:counter, or null if it is. */
    private static String splitError(String id, String what) {
        String[] parts = id.split(":", -1);
        if (parts.length != 3 || !DIGITS.matcher(parts[2]).matches()
                || !EUI64.matcher(parts[0]).matches() || !EUI64.matcher(parts[1]).matches()) {
            return what + " '" + id + "' is not 'EUI-64:EUI-64:counter'";
        }
        return null;
    }

    /** The error, with a broken service request's readable request ID, device and SR. */
    private static InvalidEvent readable(String topic, byte[] value, String message) {
        if (!topic.equals(Topics.REQUESTS)) {
            return new InvalidEvent(message);
        }
        JsonNode root;
        try {
            root = Json.parse(value);
        } catch (IOException e) {
            return new InvalidEvent(message);
        }
        if (root == null || !root.isObject()) {
            return new InvalidEvent(message);
        }
        return new InvalidEvent(message, shortText(root.get("request_id")),
                shortText(root.get("device_id")), shortText(root.get("sr")));
    }

    private static String shortText(JsonNode v) {
        if (v == null || !v.isTextual()) {
            return null;
        }
        String s = v.asText();
        int length = s.codePointCount(0, s.length());
        return length > 0 && length <= 120 ? s : null;
    }

    /** An ISO 8601 date and time (or epoch seconds as digits), as the contract's payloads give
     *  them; one without an offset is taken as UTC. */
    static Instant parseTime(String text) {
        if (DIGITS.matcher(text).matches() && text.length() <= 18) {
            long n = Long.parseLong(text);
            return n > 20_000_000_000L ? Instant.ofEpochMilli(n) : Instant.ofEpochSecond(n);
        }
        Matcher m = TIME.matcher(text);
        if (!m.matches()) {
            throw new IllegalArgumentException("not a date and time: " + text);
        }
        LocalDate date = LocalDate.of(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                Integer.parseInt(m.group(3)));
        String fraction = m.group(7) == null ? "0" : (m.group(7) + "000000000").substring(0, 9);
        LocalTime time = LocalTime.of(Integer.parseInt(m.group(4)), Integer.parseInt(m.group(5)),
                m.group(6) == null ? 0 : Integer.parseInt(m.group(6)), Integer.parseInt(fraction));
        String zone = m.group(8);
        ZoneOffset offset = zone == null || zone.equalsIgnoreCase("Z") ? ZoneOffset.UTC
                : ZoneOffset.of(zone.length() == 5 ? zone.substring(0, 3) + ":" + zone.substring(3)
                        : zone);
        return date.atTime(time).toInstant(offset);
    }

    /** Collects the field errors of one payload; upper-cases what it checks. */
    private static final class Check {
        final ObjectNode node;
        final List<String> missing = new ArrayList<>();
        final List<String> problems = new ArrayList<>();

        Check(ObjectNode node) {
            this.node = node;
        }

        /** The field's value, or null when it is absent, or JSON null where that is allowed. */
        private JsonNode get(String field, boolean required) {
            JsonNode v = node.get(field);
            if (v == null) {
                if (required) {
                    missing.add(field);
                }
                return null;
            }
            if (v.isNull()) {
                if (required) {
                    problems.add(field + ": Input should be a valid value, not null");
                }
                return null;
            }
            return v;
        }

        void string(String field, int maxLength, boolean required) {
            JsonNode v = get(field, required);
            if (v == null) {
                return;
            }
            if (!v.isTextual()) {
                problems.add(field + ": Input should be a valid string");
            } else if (v.asText().codePointCount(0, v.asText().length()) > maxLength) {
                problems.add(field + ": String should have at most " + maxLength + " characters");
            }
        }

        void pattern(String field, Pattern pattern, boolean upper, boolean required) {
            JsonNode v = get(field, required);
            if (v == null) {
                return;
            }
            if (!v.isTextual()) {
                problems.add(field + ": Input should be a valid string");
            } else if (!pattern.matcher(v.asText()).matches()) {
                problems.add(field + ": '" + v.asText() + "' is not in the expected form ("
                        + pattern.pattern() + ")");
            } else if (upper) {
                node.put(field, v.asText().toUpperCase());
            }
        }

        void oneOf(String field, Set<String> allowed, boolean required) {
            JsonNode v = get(field, required);
            if (v != null && (!v.isTextual() || !allowed.contains(v.asText()))) {
                problems.add(field + ": Input should be one of " + allowed);
            }
        }

        /** A Literal of numbers, which (as in pydantic) takes a float or a boolean of equal value. */
        void literal(String field, Set<Integer> allowed, boolean required) {
            JsonNode v = get(field, required);
            if (v == null) {
                return;
            }
            Integer number = null;
            if (v.isBoolean()) {
                number = v.asBoolean() ? 1 : 0;
            } else if (v.isIntegralNumber() && v.canConvertToInt()) {
                number = v.asInt();
            } else if (v.isFloatingPointNumber() && v.asDouble() == Math.rint(v.asDouble())
                    && Math.abs(v.asDouble()) < 1e9) {
                number = (int) v.asDouble();
            }
            if (number == null || !allowed.contains(number)) {
                problems.add(field + ": Input should be one of " + allowed);
            } else {
                node.put(field, number);
            }
        }

        void time(String field) {
            JsonNode v = get(field, true);
            if (v == null) {
                return;
            }
            if (!v.isTextual()) {
                problems.add(field + ": Input should be a valid datetime");
                return;
            }
            try {
                parseTime(v.asText());
            } catch (RuntimeException e) {
                problems.add(field + ": Input should be a valid datetime");
            }
        }

        void fail(String problem) {
            problems.add(problem);
        }

        String error() {
            if (missing.isEmpty() && problems.isEmpty()) {
                return null;
            }
            List<String> parts = new ArrayList<>();
            if (!missing.isEmpty()) {
                parts.add("missing " + String.join(", ", missing));
            }
            parts.addAll(problems);
            return String.join("; ", parts);
        }
    }
}
