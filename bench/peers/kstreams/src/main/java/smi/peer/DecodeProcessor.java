package smi.peer;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;

/** The first step, where a message was read: validate it, key a valid one by its device (the
 *  GSME for a GPF's copy) or, for the CPL, by its entry; dead-letter the rest on the partition
 *  they were read from. */
final class DecodeProcessor implements Processor<byte[], byte[], String, Routed> {
    private final Config config;
    private final Decide rules;
    private ProcessorContext<String, Routed> context;

    DecodeProcessor(Config config) {
        this.config = config;
        this.rules = new Decide(config.policy());
    }

    @Override
    public void init(ProcessorContext<String, Routed> context) {
        this.context = context;
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
        RecordMetadata meta = context.recordMetadata().orElseThrow();
        String topic = config.contractName(meta.topic());
        ObjectNode event;
        try {
            event = Inputs.decode(topic, record.value());
        } catch (InvalidEvent invalid) {
            deadLetter(record, topic, meta, invalid);
            return;
        }
        String key = switch (topic) {
            case Topics.CPL -> Events.CplEntry.of(event).key();
            case Topics.RESPONSES -> {
                String gsme = Json.text(event, "gsme_id");
                yield gsme != null ? gsme : event.get("device_id").asText();
            }
            default -> event.get("device_id").asText();
        };
        byte[] envelope = new Envelope(topic, meta.partition(), meta.offset(), event).toBytes();
        context.forward(new Record<>(key, new Routed(envelope, null), record.timestamp()));
    }

    private void deadLetter(Record<byte[], byte[]> record, String topic, RecordMetadata meta,
                            InvalidEvent error) {
        Instant now = Instant.now();
        String key = record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8);
        Map<String, Object> letter = new LinkedHashMap<>();
        letter.put("topic", topic);
        letter.put("partition", meta.partition());
        letter.put("offset", meta.offset());
        letter.put("key", key);
        letter.put("value", asText(record.value()));
        letter.put("error", error.getMessage());
        letter.put("at", now.toString());
        String outKey = key == null || key.isEmpty() ? "" : key;
        forward(record, new Out(Topics.DEADLETTER, outKey, Json.bytes(letter), meta.partition()));
        if (topic.equals(Topics.REQUESTS) && error.requestId != null) {
            forward(record, rules.reject(error.requestId, error.deviceId, error.sr, "invalid-request",
                    outKey.isEmpty() ? error.requestId : outKey, meta.partition(), now));
        }
    }

    private void forward(Record<byte[], byte[]> record, Out out) {
        context.forward(new Record<>(out.key(), new Routed(null, out), record.timestamp()));
    }

    /** The value as text, bytes that are not UTF-8 replaced, cut at 64 KiB. */
    static String asText(byte[] value) {
        if (value == null) {
            return "";
        }
        int max = Inputs.MAX_BYTES;
        String text = new String(value, 0, Math.min(value.length, max), StandardCharsets.UTF_8);
        return value.length <= max ? text : text + "... (" + value.length + " bytes)";
    }
}
