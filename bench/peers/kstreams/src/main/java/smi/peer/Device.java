package smi.peer;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** A device's SMI record and the working state the rules keep with it (the RocksDB value, as
 *  JSON). Mutable: each decision reads a fresh copy from the store and writes it back. */
@JsonInclude(JsonInclude.Include.ALWAYS)
public final class Device {
    static final Set<String> TERMINAL = Set.of("Decommissioned", "Withdrawn");
    static final String SUSPENDED = "Suspended";
    static final String DEFAULT_AFTER_SUSPENSION = "Commissioned";
    static final int HISTORY_LIMIT = 10;

    public String device_id;
    public String device_type;
    public int smets;
    public String manufacturer;
    public String model;
    public String hardware_version;
    public String firmware_version;
    public String status;
    public String status_before_suspension;
    public String supplier;
    public String gpf_id;
    public List<Pending> pending = new ArrayList<>();
    public List<String> gpf_responses_seen = new ArrayList<>();
    public List<Map<String, String>> history = new ArrayList<>();
    public List<Early> early = new ArrayList<>();
    public List<String> closed = new ArrayList<>();

    /** An accepted SR11.2 or SR11.3 awaiting its response; {@code at} the request's own time. */
    public static final class Pending {
        public String request_id;
        public String sr;
        public String firmware_hash;
        public boolean retry;
        public Double at;

        public Pending() {}

        Pending(String requestId, String sr, String firmwareHash, boolean retry, Double at) {
            this.request_id = requestId;
            this.sr = sr;
            this.firmware_hash = firmwareHash;
            this.retry = retry;
            this.at = at;
        }
    }

    /** A response read before its request, with where it was read. */
    public static final class Early {
        public String request_id;
        public ObjectNode response;
        public Source source;

        public Early() {}

        Early(String requestId, ObjectNode response, Source source) {
            this.request_id = requestId;
            this.response = response;
            this.source = source;
        }
    }

    /** Where an input message was read: its contract topic, partition and offset, and its ID. */
    public record Source(String topic, int partition, long offset, String id) {}

    static Device fromInventory(Events.Inventory inv, Device previous) {
        Device d = previous != null ? previous : new Device();
        String before = inv.statusBeforeSuspension();
        if (inv.status().equals(SUSPENDED) && before == null) {
            before = statusBefore(previous);
        }
        d.device_id = inv.deviceId();
        d.device_type = inv.deviceType();
        d.smets = inv.smets();
        d.manufacturer = inv.manufacturer();
        d.model = inv.model();
        d.hardware_version = inv.hardwareVersion();
        d.firmware_version = inv.firmwareVersion();
        d.status = inv.status();
        d.supplier = inv.supplier();
        d.gpf_id = inv.gpfId();
        d.status_before_suspension = inv.status().equals(SUSPENDED) ? before : null;
        return d;
    }

    /** What an inventory record saying Suspended without the status before it comes back to. */
    private static String statusBefore(Device previous) {
        if (previous == null || previous.terminal()) {
            return DEFAULT_AFTER_SUSPENSION;
        }
        if (previous.status.equals(SUSPENDED)) {
            return previous.status_before_suspension != null
                    ? previous.status_before_suspension : DEFAULT_AFTER_SUSPENSION;
        }
        return previous.status;
    }

    String firmwareKey() {
        return Events.cplKey(manufacturer, model, hardware_version, firmware_version);
    }

    boolean terminal() {
        return TERMINAL.contains(status);
    }

    void suspend() {
        if (!status.equals(SUSPENDED)) {
            status_before_suspension = status;
            status = SUSPENDED;
        }
    }

    void restore() {
        if (status.equals(SUSPENDED)) {
            status = status_before_suspension != null ? status_before_suspension
                    : DEFAULT_AFTER_SUSPENSION;
            status_before_suspension = null;
        }
    }

    void addHistory(Map<String, String> change) {
        history.add(change);
        while (history.size() > HISTORY_LIMIT) {
            history.remove(0);
        }
    }

    byte[] toBytes() {
        return Json.bytes(this);
    }

    static Device fromBytes(byte[] bytes) {
        return bytes == null ? null : Json.read(bytes, Device.class);
    }
}
