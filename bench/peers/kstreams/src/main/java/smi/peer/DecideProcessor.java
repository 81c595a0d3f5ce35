package smi.peer;

import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import smi.peer.Device.Source;

/** The second step, on the device's home partition: each device's inventory records, requests
 *  and responses, and every CPL change (broadcast to every partition), in timestamp order,
 *  decided against the device's record in the {@code devices} store and the CPL as this
 *  partition has seen it (the {@code cpl} store). */
final class DecideProcessor implements Processor<String, byte[], String, Out> {
    static final String DEVICES = "devices";
    static final String CPL = "cpl";
    private static final String SEEDED = "~seeded";
    /** What became of each input, for the summary logged at exit. */
    static final Map<String, LongAdder> OUTCOMES = new ConcurrentHashMap<>();

    private final Config config;
    private final Decide rules;
    private final Map<String, String> seed;
    private ProcessorContext<String, Out> context;
    private KeyValueStore<String, byte[]> devices;
    private KeyValueStore<String, String> cplStore;
    private final Map<String, String> cpl = new HashMap<>();

    DecideProcessor(Config config, Map<String, String> seed) {
        this.config = config;
        this.rules = new Decide(config.policy());
        this.seed = seed;
    }

    @Override
    public void init(ProcessorContext<String, Out> context) {
        this.context = context;
        this.devices = context.getStateStore(DEVICES);
        this.cplStore = context.getStateStore(CPL);
        if (cplStore.get(SEEDED) == null) {
            // first start: the CPL as read before start-up, so that no device event is decided
            // before its partition has the CPL (its broadcast may arrive after the first events)
            seed.forEach(cplStore::put);
            cplStore.put(SEEDED, "true");
        }
        try (KeyValueIterator<String, String> all = cplStore.all()) {
            all.forEachRemaining(kv -> cpl.put(kv.key, kv.value));
        }
        cpl.remove(SEEDED);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        Envelope envelope = Envelope.fromBytes(record.value());
        Events.Event event = Events.of(envelope.topic(), envelope.event());
        Source source = envelope.source(event);
        Instant now = Instant.now();
        if (event instanceof Events.CplEntry entry) {
            onCpl(entry, source, now, record.timestamp());
            return;
        }
        String key = record.key();
        Decide.Decision decision;
        try {
            Device device = Device.fromBytes(devices.get(key));
            Decide.Cpl view = cpl::get;
            if (event instanceof Events.Inventory inv) {
                decision = rules.onInventory(device, inv, view, source, now);
            } else if (event instanceof Events.Request req) {
                decision = rules.onRequest(device, req, view, now);
            } else {
                decision = rules.onResponse(device, (Events.Response) event, view, source, now);
            }
        } catch (RuntimeException e) {  // a bug must not stop the processor: keep the message
            internalError(record, envelope, e, now);
            return;
        }
        if (decision.record() != null) {
            devices.put(key, decision.record().toBytes());
        }
        emit(decision, record.timestamp());
    }

    private void emit(Decide.Decision decision, long timestamp) {
        count(decision.outcome());
        for (Out out : decision.outputs()) {
            context.forward(new Record<>(out.key(), out, timestamp));
        }
    }

    /** A CPL change: this partition's CPL takes it; a removal suspends the devices it covered. */
    private void onCpl(Events.CplEntry entry, Source source, Instant now, long timestamp) {
        cpl.put(entry.key(), entry.status());
        cplStore.put(entry.key(), entry.status());
        count("cpl:" + entry.status());
        if (!entry.status().equals("Removed")) {
            return;
        }
        List<KeyValue<String, Device>> covered = new ArrayList<>();
        try (KeyValueIterator<String, byte[]> all = devices.all()) {
            while (all.hasNext()) {
                KeyValue<String, byte[]> kv = all.next();
                Device device = Device.fromBytes(kv.value);
                if (Decide.coveredBy(entry, device)
                        && Decide.removalCanSuspend(device.status, device.device_type)) {
                    covered.add(KeyValue.pair(kv.key, device));
                }
            }
        }
        for (KeyValue<String, Device> kv : covered) {
            Decide.Decision decision = rules.onCplRemoval(kv.value, entry, source, now);
            devices.put(kv.key, kv.value.toBytes());
            emit(decision, timestamp);
        }
    }

    private void internalError(Record<String, byte[]> record, Envelope envelope, RuntimeException e,
                               Instant now) {
        Map<String, Object> letter = new LinkedHashMap<>();
        letter.put("topic", envelope.topic());
        letter.put("partition", envelope.partition());
        letter.put("offset", envelope.offset());
        letter.put("key", record.key());
        letter.put("value", envelope.event().toString());
        letter.put("error", "internal error: " + e);
        letter.put("at", now.toString());
        int partition = context.recordMetadata().orElseThrow().partition();
        context.forward(new Record<>(record.key(), new Out(Topics.DEADLETTER, record.key(),
                Json.bytes(letter), partition), record.timestamp()));
        count("dead-lettered");
    }

    private static void count(String outcome) {
        OUTCOMES.computeIfAbsent(outcome, k -> new LongAdder()).increment();
    }
}
