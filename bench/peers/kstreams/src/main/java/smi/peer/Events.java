package smi.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;

/** The four input payloads, validated ({@link Inputs}) and normalised: IDs and hex values upper
 *  case. Each travels through the repartition topics as its normalised JSON object. */
final class Events {
    private Events() {}

    interface Event {
        ObjectNode node();
    }

    static String cplKey(String manufacturer, String model, String hardware, String firmware) {
        return manufacturer + ":" + model + ":" + hardware + ":" + firmware;
    }

    record CplEntry(ObjectNode node, String manufacturer, String model, String hardwareVersion,
                    String firmwareVersion, String status) implements Event {
        static CplEntry of(ObjectNode n) {
            return new CplEntry(n, n.get("manufacturer").asText(), n.get("model").asText(),
                    n.get("hardware_version").asText(), n.get("firmware_version").asText(),
                    n.get("status").asText());
        }

        String key() {
            return cplKey(manufacturer, model, hardwareVersion, firmwareVersion);
        }
    }

    record Inventory(ObjectNode node, String deviceId, String deviceType, int smets,
                     String manufacturer, String model, String hardwareVersion,
                     String firmwareVersion, String status, String supplier, String gpfId,
                     String statusBeforeSuspension) implements Event {
        static Inventory of(ObjectNode n) {
            return new Inventory(n, n.get("device_id").asText(), n.get("device_type").asText(),
                    n.get("smets").asInt(), n.get("manufacturer").asText(), n.get("model").asText(),
                    n.get("hardware_version").asText(), n.get("firmware_version").asText(),
                    n.get("status").asText(), n.get("supplier").asText(), Json.text(n, "gpf_id"),
                    Json.text(n, "status_before_suspension"));
        }
    }

    /** A service request: {@code node} is the request as received (unknown fields kept), its
     *  IDs and hex values upper case; the command sent on is made from it. */
    record Request(ObjectNode node, String requestId, String sr, String originator,
                   String deviceId, String firmwareHash, double at) implements Event {
        static Request of(ObjectNode n) {
            return new Request(n, n.get("request_id").asText(), n.get("sr").asText(),
                    n.get("originator").asText(), n.get("device_id").asText(),
                    Json.text(n, "firmware_hash"), seconds(Inputs.parseTime(n.get("at").asText())));
        }

        /** The request ID with its EUI-64s upper case, as a response's request ID gives it. */
        String canonicalId() {
            return originator + ":" + deviceId + ":" + requestId.substring(requestId.lastIndexOf(':') + 1);
        }
    }

    record Response(ObjectNode node, String responseId, String sr, String deviceId,
                    Integer outcome, String firmwareVersion, String gsmeId, double at)
            implements Event {
        static Response of(ObjectNode n) {
            JsonNode outcome = n.get("outcome");
            return new Response(n, n.get("response_id").asText(), n.get("sr").asText(),
                    n.get("device_id").asText(),
                    outcome == null || outcome.isNull() ? null : outcome.asInt(),
                    Json.text(n, "firmware_version"), Json.text(n, "gsme_id"),
                    seconds(Inputs.parseTime(n.get("at").asText())));
        }

        /** The ID of the request this answers: target:originator:n becomes originator:target:n. */
        String requestId() {
            String[] parts = responseId.split(":", -1);
            return parts[1].toUpperCase() + ":" + parts[0].toUpperCase() + ":" + parts[2];
        }

        /** The device whose record this concerns (the GSME for a GPF's copy). */
        String subject() {
            return gsmeId != null ? gsmeId : deviceId;
        }
    }

    static double seconds(Instant at) {
        return at.getEpochSecond() + at.getNano() / 1e9;
    }

    static Event of(String topic, ObjectNode node) {
        return switch (topic) {
            case Topics.INVENTORY -> Inventory.of(node);
            case Topics.REQUESTS -> Request.of(node);
            case Topics.RESPONSES -> Response.of(node);
            case Topics.CPL -> CplEntry.of(node);
            default -> throw new IllegalArgumentException("no input topic " + topic);
        };
    }
}
