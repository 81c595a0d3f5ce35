package smi.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import smi.peer.Device.Source;

/** A validated input event on its way through a repartition topic, with where it was read:
 *  corrections and alerts name the original topic, partition and offset, so that their IDs are
 *  those the worker derives. */
record Envelope(String topic, int partition, long offset, ObjectNode event) {

    byte[] toBytes() {
        ObjectNode n = Json.object();
        n.put("topic", topic);
        n.put("partition", partition);
        n.put("offset", offset);
        n.set("event", event);
        return Json.bytes(n);
    }

    static Envelope fromBytes(byte[] bytes) {
        try {
            JsonNode n = Json.parse(bytes);
            return new Envelope(n.get("topic").asText(), n.get("partition").asInt(),
                    n.get("offset").asLong(), (ObjectNode) n.get("event"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The source a correction or an alert names: the response's ID, or the CPL entry's key. */
    Source source(Events.Event decoded) {
        String id = null;
        if (decoded instanceof Events.Response r) {
            id = r.responseId();
        } else if (decoded instanceof Events.Request r) {
            id = r.requestId();
        } else if (decoded instanceof Events.CplEntry c) {
            id = c.key();
        }
        return new Source(topic, partition, offset, id);
    }
}
