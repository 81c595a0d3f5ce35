package smi.peer;

import java.util.Map;
import java.util.Set;

/** The policy switches and settings the rules read (docs/domain.md, section 9). */
record Policy(boolean sr112WhenSuspended, boolean sr113RetryUpdatesSmi, boolean secmp0007,
              Set<String> suspendedExceptions, Map<String, String> responseCodes,
              int pendingLimit, double pendingMaxAgeSeconds) {

    static final Set<String> DEFAULT_EXCEPTIONS = Set.of("11.1", "11.3", "8.2", "8.3", "8.4");
    static final Map<String, String> DEFAULT_RESPONSE_CODES = Map.of(
            "success", "I0", "device-suspended", "E11", "not-authorised", "E2",
            "out-of-scope", "E12", "unknown-device", "E4", "invalid-request", "E1",
            "device-terminal", "E13");
    static final double DEFAULT_PENDING_MAX_AGE = 7 * 24 * 3600.0;

    static Policy defaults() {
        return new Policy(true, true, false, DEFAULT_EXCEPTIONS, DEFAULT_RESPONSE_CODES, 16,
                DEFAULT_PENDING_MAX_AGE);
    }

    String responseCode(String reason) {
        return responseCodes.getOrDefault(reason, reason);
    }

    String name() {
        String label = sr112WhenSuspended ? (sr113RetryUpdatesSmi ? "mp105" : "sr11.2")
                : (sr113RetryUpdatesSmi ? "retry" : "baseline");
        return secmp0007 ? label + "+secmp0007" : label;
    }
}
