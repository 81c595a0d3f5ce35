package smi.peer;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import smi.peer.Device.Early;
import smi.peer.Device.Pending;
import smi.peer.Device.Source;
import smi.peer.Events.CplEntry;
import smi.peer.Events.Inventory;
import smi.peer.Events.Request;
import smi.peer.Events.Response;

/** The rules of docs/domain.md: one device's record, one input event, the CPL as this partition
 *  has it and the policy in; the record (changed in place) and the outputs out. */
final class Decide {
    static final Set<String> MP105_TYPES = Set.of("ESME", "GSME");
    static final Set<String> SECMP0007_TYPES = Set.of("PPMID", "HCALCS");
    static final Set<String> TYPE_2 = Set.of("IHD", "CAD");
    static final Set<String> SUPPLIER_ONLY = Set.of("11.1", "11.3", "8.3", "8.4");
    static final UUID NAMESPACE = UUID.fromString("5b0c7c1e-3c41-4d8e-9a57-1f0d5e0a1052");

    /** The record to write back (null: unchanged), what goes out, and what happened. */
    record Decision(Device record, List<Out> outputs, String outcome) {
        static Decision none(String outcome) {
            return new Decision(null, List.of(), outcome);
        }
    }

    /** The CPL entries' statuses by MANUFACTURER:MODEL:HARDWARE:FIRMWARE. */
    interface Cpl {
        String status(String key);
    }

    private final Policy policy;

    Decide(Policy policy) {
        this.policy = policy;
    }

    // --- service requests ---------------------------------------------------------------

    Decision onRequest(Device record, Request request, Cpl cpl, Instant now) {
        String canonical = request.canonicalId();
        if (record != null && knownRequest(record, canonical)) {
            return Decision.none("ignored:duplicate-request");
        }
        String reason = rejectionReason(record, request);
        if (reason != null) {
            Out rejection = reject(request.requestId(), request.deviceId(), request.sr(), reason,
                    request.deviceId(), null, now);
            return new Decision(null, List.of(rejection), "rejected:" + reason);
        }
        List<Out> outputs = new ArrayList<>();
        outputs.add(command(request, record, now));
        if (!worthRemembering(request.sr(), record.device_type)) {
            return new Decision(null, outputs, "accepted");
        }
        boolean pushedOut = awaiting(record, request);
        String accepted = pushedOut ? "accepted:pushed-out-oldest" : "accepted";
        Early early = null;
        for (Early e : record.early) {
            if (e.request_id.equals(canonical)) {
                early = e;
                break;
            }
        }
        if (early == null) {
            return new Decision(record, outputs, accepted);
        }
        // its response came first: decide it now, as if it had waited for the request
        record.early.remove(early);
        Decision answered = onResponse(record, Response.of(early.response), cpl, early.source, now);
        outputs.addAll(answered.outputs());
        return new Decision(record, outputs, accepted);
    }

    String rejectionReason(Device record, Request request) {
        if (record == null) {
            return "unknown-device";
        }
        if (record.terminal()) {
            return "device-terminal";
        }
        if (!inScope(request.sr(), record.device_type)) {
            return "out-of-scope";
        }
        if (SUPPLIER_ONLY.contains(request.sr()) && !request.originator().equals(record.supplier)) {
            return "not-authorised";
        }
        if (record.status.equals(Device.SUSPENDED) && !allowedWhileSuspended(request.sr(), record.device_type)) {
            return "device-suspended";
        }
        return null;
    }

    boolean mp105Applies(String deviceType) {
        return MP105_TYPES.contains(deviceType)
                || (SECMP0007_TYPES.contains(deviceType) && policy.secmp0007());
    }

    boolean inScope(String sr, String deviceType) {
        if (!sr.startsWith("11.")) {
            return true;
        }
        if (TYPE_2.contains(deviceType)) {
            return false;
        }
        return !SECMP0007_TYPES.contains(deviceType) || policy.secmp0007();
    }

    boolean allowedWhileSuspended(String sr, String deviceType) {
        return policy.suspendedExceptions().contains(sr)
                || (sr.equals("11.2") && policy.sr112WhenSuspended() && mp105Applies(deviceType));
    }

    boolean worthRemembering(String sr, String deviceType) {
        return sr.equals("11.3")
                || (sr.equals("11.2") && policy.sr112WhenSuspended() && mp105Applies(deviceType));
    }

    /** The SR as received, with when it was accepted and, for SR11.3, whether it is a retry. */
    Out command(Request request, Device record, Instant now) {
        ObjectNode command = request.node().deepCopy();
        // as the worker sends it: optional fields only when given, never as null
        command.properties().removeIf(field -> field.getValue().isNull());
        command.put("accepted_at", now.toString());
        if (request.sr().equals("11.3")) {
            command.put("retry", isRetry(awaited(record.pending, request.at()), request.firmwareHash()));
        } else {
            command.remove("retry");
        }
        return new Out(Topics.COMMANDS, request.deviceId(), Json.bytes(command), null);
    }

    Out reject(String requestId, String deviceId, String sr, String reason, String key,
               Integer partition, Instant now) {
        Map<String, Object> rejection = new LinkedHashMap<>();
        rejection.put("request_id", requestId);
        rejection.put("device_id", deviceId);
        rejection.put("sr", sr);
        rejection.put("reason", reason);
        rejection.put("response_code", policy.responseCode(reason));
        rejection.put("at", now.toString());
        return new Out(Topics.REJECTIONS, key, Json.bytes(rejection), partition);
    }

    static boolean knownRequest(Device record, String requestId) {
        if (record.closed.contains(requestId)) {
            return true;
        }
        for (Pending p : record.pending) {
            if (p.request_id.equals(requestId)) {
                return true;
            }
        }
        return false;
    }

    static boolean isRetry(List<Pending> pending, String firmwareHash) {
        for (Pending p : pending) {
            if (p.sr.equals("11.3") && java.util.Objects.equals(p.firmware_hash, firmwareHash)) {
                return true;
            }
        }
        return false;
    }

    boolean expired(Pending pending, double now) {
        return pending.at != null && now - pending.at > policy.pendingMaxAgeSeconds();
    }

    List<Pending> awaited(List<Pending> pending, double now) {
        List<Pending> live = new ArrayList<>(pending.size());
        for (Pending p : pending) {
            if (!expired(p, now)) {
                live.add(p);
            }
        }
        return live;
    }

    /** Remember an accepted SR11.2/11.3 until its response; whether another was pushed out.
     *  Expired requests go, and each SR keeps its own limit, so no read pushes out an SR11.3. */
    boolean awaiting(Device record, Request request) {
        double now = request.at();
        List<Pending> live = awaited(record.pending, now);
        boolean retry = request.sr().equals("11.3") && isRetry(live, request.firmwareHash());
        Pending entry = new Pending(request.canonicalId(), request.sr(), request.firmwareHash(), retry, now);
        live.add(entry);
        List<Pending> kept = withinLimit(live, request.sr(), policy.pendingLimit());
        List<String> gone = new ArrayList<>();
        for (Pending p : record.pending) {
            if (!kept.contains(p)) {
                gone.add(p.request_id);
            }
        }
        if (!kept.contains(entry)) {
            gone.add(entry.request_id);
        }
        int dropped = live.size() - kept.size();
        record.pending = kept;
        closing(record, gone);
        return dropped > 0;
    }

    /** At most {@code limit} of one SR, the oldest going first; of SR11.3s the retries before
     *  a first one, whose response always reconciles. */
    static List<Pending> withinLimit(List<Pending> pending, String sr, int limit) {
        List<Pending> same = new ArrayList<>();
        for (Pending p : pending) {
            if (p.sr.equals(sr)) {
                same.add(p);
            }
        }
        if (same.size() <= limit) {
            return pending;
        }
        List<Pending> victims = new ArrayList<>();
        for (Pending p : same) {
            if (p.retry) {
                victims.add(p);
            }
        }
        for (Pending p : same) {
            if (!p.retry) {
                victims.add(p);
            }
        }
        Set<String> gone = new HashSet<>();
        for (Pending p : victims.subList(0, same.size() - limit)) {
            gone.add(p.request_id);
        }
        List<Pending> kept = new ArrayList<>();
        for (Pending p : pending) {
            if (!gone.contains(p.request_id)) {
                kept.add(p);
            }
        }
        return kept;
    }

    /** Remember requests no longer awaited (twice the requests awaited, oldest out first). */
    void closing(Device record, List<String> requestIds) {
        if (requestIds.isEmpty()) {
            return;
        }
        record.closed.addAll(requestIds);
        int limit = 2 * policy.pendingLimit();
        if (record.closed.size() > limit) {
            record.closed = new ArrayList<>(record.closed.subList(record.closed.size() - limit,
                    record.closed.size()));
        }
    }

    // --- device responses ---------------------------------------------------------------

    Decision onResponse(Device record, Response response, Cpl cpl, Source source, Instant now) {
        if (record == null) {
            return Decision.none("ignored:unknown-device");
        }
        if (response.gsmeId() != null) {
            return onGpfCopy(record, response, source, now);
        }
        if (record.terminal()) {
            return Decision.none("ignored:terminal");
        }
        String requestId = response.requestId();
        Pending answered = null;
        for (Pending p : record.pending) {
            if (p.request_id.equals(requestId)) {
                answered = p;
                break;
            }
        }
        if (answered == null && record.closed.contains(requestId)) {
            return Decision.none("ignored:request-closed");
        }
        if (answered == null) {
            return hold(record, response, source);
        }
        if (!answered.sr.equals(response.sr())) {
            return Decision.none("ignored:not-the-request-sr");
        }
        String fromStatus = record.status;
        String fromFirmware = record.firmware_version;
        record.pending.remove(answered);
        closing(record, List.of(answered.request_id));
        if (expired(answered, response.at())) {
            return new Decision(record, List.of(), "ignored:request-expired");
        }
        String cause = reconcilingCause(answered, response, record.device_type);
        if (cause == null) {
            return new Decision(record, List.of(), "settled");
        }
        reconcile(record, response.firmwareVersion(), cpl);
        return corrected(fromStatus, fromFirmware, record, cause, source, now);
    }

    /** Keep a response no request awaits: its request may still be on its way. */
    Decision hold(Device record, Response response, Source source) {
        if (!worthRemembering(response.sr(), record.device_type)) {
            return Decision.none("ignored:no-request-awaiting");
        }
        String requestId = response.requestId();
        for (Early e : record.early) {
            if (e.request_id.equals(requestId)) {
                return Decision.none("ignored:duplicate");
            }
        }
        record.early.add(new Early(requestId, response.node(), source));
        while (record.early.size() > policy.pendingLimit()) {
            record.early.remove(0);
        }
        return new Decision(record, List.of(), "held:no-request-yet");
    }

    Decision onGpfCopy(Device gsme, Response response, Source source, Instant now) {
        if (!"GSME".equals(gsme.device_type) || !response.deviceId().equals(gsme.gpf_id)) {
            return Decision.none("ignored:not-the-gsme-gpf");
        }
        if (!response.sr().equals("11.2")) {
            return Decision.none("ignored:not-an-sr11.2-copy");
        }
        if (gsme.terminal()) {
            return Decision.none("ignored:terminal");
        }
        if (gsme.gpf_responses_seen.contains(response.responseId())) {
            return Decision.none("ignored:duplicate");
        }
        gsme.gpf_responses_seen.add(response.responseId());
        while (gsme.gpf_responses_seen.size() > policy.pendingLimit()) {
            gsme.gpf_responses_seen.remove(0);
        }
        String reported = response.firmwareVersion();
        if (reported == null || reported.equals(gsme.firmware_version)) {
            return new Decision(gsme, List.of(), "gpf-copy-matches");
        }
        Map<String, Object> alert = new LinkedHashMap<>();
        alert.put("alert_code", "N52");
        alert.put("device_id", gsme.device_id);
        alert.put("gpf_id", response.deviceId());
        alert.put("smi_firmware_version", gsme.firmware_version);
        alert.put("gpf_firmware_version", reported);
        alert.put("recipient", gsme.supplier);
        alert.put("source", source);
        alert.put("at", now.toString());
        return new Decision(gsme, List.of(new Out(Topics.ALERTS, gsme.device_id, Json.bytes(alert), null)),
                "alert:N52");
    }

    String reconcilingCause(Pending answered, Response response, String deviceType) {
        if (answered.sr.equals("11.2")) {
            return policy.sr112WhenSuspended() && mp105Applies(deviceType) ? "sr11.2-response" : null;
        }
        if (!answered.sr.equals("11.3") || response.outcome() == null || response.outcome() != 0) {
            return null;
        }
        if (!answered.retry) {
            return "sr11.3-response";
        }
        return policy.sr113RetryUpdatesSmi() && mp105Applies(deviceType) ? "sr11.3-retry-response" : null;
    }

    /** Set the reported firmware; restore or suspend by its CPL entry. */
    static void reconcile(Device record, String version, Cpl cpl) {
        if (record.terminal()) {
            return;
        }
        String key = Events.cplKey(record.manufacturer, record.model, record.hardware_version, version);
        record.firmware_version = version;
        if ("Active".equals(cpl.status(key))) {
            record.restore();
        } else {
            record.suspend();
        }
    }

    // --- inventory and the CPL ----------------------------------------------------------

    /** Stored as the registry says, even over a terminal device; a device registered on
     *  firmware whose CPL entry is removed is suspended at once, as the removal would have. */
    Decision onInventory(Device previous, Inventory inventory, Cpl cpl, Source source, Instant now) {
        Device stored = Device.fromInventory(inventory, previous);
        if (!"Removed".equals(cpl.status(stored.firmwareKey()))
                || !removalCanSuspend(stored.status, stored.device_type)) {
            return new Decision(stored, List.of(), "stored");
        }
        String fromStatus = stored.status;
        stored.suspend();
        return corrected(fromStatus, stored.firmware_version, stored, "cpl-removed", source, now);
    }

    static boolean coveredBy(CplEntry entry, Device record) {
        return record.manufacturer.equals(entry.manufacturer()) && record.model.equals(entry.model())
                && record.hardware_version.equals(entry.hardwareVersion())
                && record.firmware_version.equals(entry.firmwareVersion());
    }

    static boolean removalCanSuspend(String status, String deviceType) {
        return !Device.TERMINAL.contains(status) && !status.equals(Device.SUSPENDED)
                && !TYPE_2.contains(deviceType);
    }

    /** A removed CPL entry suspends a non-terminal device it covered. */
    Decision onCplRemoval(Device record, CplEntry entry, Source source, Instant now) {
        if (!coveredBy(entry, record) || !removalCanSuspend(record.status, record.device_type)) {
            return Decision.none("unchanged");
        }
        String fromStatus = record.status;
        record.suspend();
        return corrected(fromStatus, record.firmware_version, record, "cpl-removed", source, now);
    }

    /** Every change of status or firmware emits one correction, none otherwise. */
    Decision corrected(String fromStatus, String fromFirmware, Device record, String cause,
                       Source source, Instant now) {
        if (fromStatus.equals(record.status) && fromFirmware.equals(record.firmware_version)) {
            return new Decision(record, List.of(), "unchanged");
        }
        Map<String, Object> correction = new LinkedHashMap<>();
        correction.put("correction_id", correctionId(source, record.device_id));
        correction.put("device_id", record.device_id);
        correction.put("from_status", fromStatus);
        correction.put("to_status", record.status);
        correction.put("from_firmware", fromFirmware);
        correction.put("to_firmware", record.firmware_version);
        correction.put("cause", cause);
        correction.put("source", source);
        correction.put("at", now.toString());
        Map<String, String> change = new LinkedHashMap<>();
        change.put("at", now.toString());
        change.put("from_status", fromStatus);
        change.put("to_status", record.status);
        change.put("from_firmware", fromFirmware);
        change.put("to_firmware", record.firmware_version);
        change.put("cause", cause);
        change.put("source", (source.topic() + "[" + source.partition() + "]@" + source.offset() + " "
                + (source.id() == null ? "" : source.id())).strip());
        record.addHistory(change);
        return new Decision(record, List.of(new Out(Topics.CORRECTIONS, record.device_id,
                Json.bytes(correction), null)), "corrected");
    }

    /** The UUIDv5 of {@code topic/partition/offset/device} in the corrections' namespace. */
    static String correctionId(Source source, String deviceId) {
        String name = source.topic() + "/" + source.partition() + "/" + source.offset() + "/" + deviceId;
        try {
            MessageDigest sha1 = MessageDigest.getInstance("SHA-1");
            sha1.update(toBytes(NAMESPACE));
            byte[] digest = sha1.digest(name.getBytes(StandardCharsets.UTF_8));
            digest[6] = (byte) ((digest[6] & 0x0f) | 0x50);
            digest[8] = (byte) ((digest[8] & 0x3f) | 0x80);
            long msb = 0;
            long lsb = 0;
            for (int i = 0; i < 8; i++) {
                msb = (msb << 8) | (digest[i] & 0xff);
                lsb = (lsb << 8) | (digest[i + 8] & 0xff);
            }
            return new UUID(msb, lsb).toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] toBytes(UUID uuid) {
        byte[] out = new byte[16];
        long msb = uuid.getMostSignificantBits();
        long lsb = uuid.getLeastSignificantBits();
        for (int i = 0; i < 8; i++) {
            out[i] = (byte) (msb >>> (56 - 8 * i));
            out[i + 8] = (byte) (lsb >>> (56 - 8 * i));
        }
        return out;
    }
}
