package smi.peer;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.state.Stores;

/** The Kafka Streams peer of the smi-streams worker: the same inputs, rules and outputs. */
public final class Main {
    /** Internal topics are {@code <application.id>-<name>-repartition}. */
    static final String DEVICES_REPARTITION = "devices";
    static final String CPL_BROADCAST = "cpl-broadcast";

    private Main() {}

    public static void main(String[] args) throws Exception {
        Config config = new Config(System.getenv(), args);
        config.policy();  // fail now on a bad setting
        createMissingTopics(config);
        Map<String, String> seed = readCpl(config);
        Topology topology = topology(config, seed);
        KafkaStreams streams = new KafkaStreams(topology, properties(config));
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            log("state " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            log("stopping on " + e);
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            log("outcomes " + new TreeMap<>(DecideProcessor.OUTCOMES));
        }, "smi-kstreams-stop"));
        log("application " + config.appId() + ", " + config.guarantee() + ", commit every "
                + config.commitIntervalMs() + " ms, policy " + config.policy().name() + ", "
                + seed.size() + " CPL entries read at start");
        streams.start();
        stopped.await();
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }

    static void log(String text) {
        System.out.println("smi-kstreams: " + text);
        System.out.flush();
    }

    static Properties properties(Config config) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, config.appId());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, config.broker());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, config.guarantee());
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, config.commitIntervalMs());
        p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, config.maxTaskIdleMs());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, config.streamThreads());
        p.put(StreamsConfig.STATE_DIR_CONFIG, config.stateDir().toString());
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, (int) config.replicationFactor());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.putAll(config.extraProperties());
        return p;
    }

    static Topology topology(Config config, Map<String, String> seed) {
        StreamsBuilder builder = new StreamsBuilder();
        Serde<byte[]> bytes = Serdes.ByteArray();
        Serde<String> text = Serdes.String();
        Serde<Out> outSerde = Serdes.serdeFrom((topic, out) -> out.value(), (topic, data) -> {
            throw new UnsupportedOperationException("outputs are only written");
        });

        // 1. where each message was read: validate, dead-letter, key by the device
        KStream<String, Routed> devices = builder
                .stream(Topics.DEVICE_INPUTS.stream().map(config::topic).toList(),
                        Consumed.with(bytes, bytes).withName("device-inputs"))
                .process(() -> new DecodeProcessor(config), Named.as("decode"));
        KStream<String, Routed> cpl = builder
                .stream(config.topic(Topics.CPL), Consumed.with(bytes, bytes).withName("cpl-input"))
                .process(() -> new DecodeProcessor(config), Named.as("decode-cpl"));
        Map<String, KStream<String, Routed>> deviceBranches = devices.split(Named.as("device-"))
                .branch((k, v) -> v.out() != null, Branched.as("outputs"))
                .defaultBranch(Branched.as("events"));
        Map<String, KStream<String, Routed>> cplBranches = cpl.split(Named.as("cpl-"))
                .branch((k, v) -> v.out() != null, Branched.as("outputs"))
                .defaultBranch(Branched.as("events"));
        deviceBranches.get("device-outputs").merge(cplBranches.get("cpl-outputs"))
                .mapValues(Routed::out, Named.as("dead-letters"))
                .to((key, out, context) -> config.topic(out.topic()),
                        Produced.with(text, outSerde).withStreamPartitioner(Main::outputPartition)
                                .withName("dead-letter-outputs"));

        // 2. to the device's home partition; every CPL change to every partition
        KStream<String, byte[]> homed = deviceBranches.get("device-events")
                .mapValues(Routed::envelope, Named.as("device-envelopes"))
                .repartition(Repartitioned.with(text, bytes).withName(DEVICES_REPARTITION));
        KStream<String, byte[]> broadcast = cplBranches.get("cpl-events")
                .mapValues(Routed::envelope, Named.as("cpl-envelopes"))
                .repartition(Repartitioned.with(text, bytes).withName(CPL_BROADCAST)
                        .withStreamPartitioner(Main::everyPartition));

        // 3. decided in timestamp order against the device's record and the partition's CPL
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(DecideProcessor.DEVICES), text, bytes).withCachingEnabled());
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(DecideProcessor.CPL), text, text));
        homed.merge(broadcast, Named.as("device-timeline"))
                .process(() -> new DecideProcessor(config, seed), Named.as("decide"),
                        DecideProcessor.DEVICES, DecideProcessor.CPL)
                .to((key, out, context) -> config.topic(out.topic()),
                        Produced.with(text, outSerde).withStreamPartitioner(Main::outputPartition)
                                .withName("outputs"));
        return builder.build();
    }

    /** An output goes to the partition of the input it answers when it says so (dead letters),
     *  otherwise to its key's murmur2 partition: the device's home. */
    static Optional<Set<Integer>> outputPartition(String topic, String key, Out out, int partitions) {
        if (out.partition() != null) {
            return Optional.of(Set.of(out.partition()));
        }
        byte[] keyBytes = key.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        return Optional.of(Set.of(Utils.toPositive(Utils.murmur2(keyBytes)) % partitions));
    }

    static Optional<Set<Integer>> everyPartition(String topic, String key, byte[] value, int partitions) {
        return Optional.of(IntStream.range(0, partitions).boxed().collect(Collectors.toSet()));
    }

    /** The contract's topics that are missing, made with {@code SMI_PARTITIONS} partitions. */
    static void createMissingTopics(Config config) throws Exception {
        Map<String, Object> conf = Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, config.broker());
        try (Admin admin = Admin.create(conf)) {
            Set<String> existing = admin.listTopics().names().get();
            List<NewTopic> missing = new ArrayList<>();
            for (String name : concat(Topics.INPUTS, Topics.OUTPUTS)) {
                if (!existing.contains(config.topic(name))) {
                    missing.add(new NewTopic(config.topic(name), config.partitions(), config.replicationFactor()));
                }
            }
            if (!missing.isEmpty()) {
                admin.createTopics(missing).all().get();
                log("created " + missing.stream().map(NewTopic::name).toList());
            }
        }
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    /** The CPL now on the broker, each entry's status by its key: the first CPL of a device
     *  partition that starts empty (see {@link DecideProcessor#init}). */
    static Map<String, String> readCpl(Config config) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, config.broker());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        Map<String, String> cpl = new HashMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> partitions = consumer.partitionsFor(config.topic(Topics.CPL)).stream()
                    .map(info -> new TopicPartition(info.topic(), info.partition())).toList();
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
            while (partitions.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    try {
                        ObjectNode entry = Inputs.decode(Topics.CPL, r.value());
                        Events.CplEntry e = Events.CplEntry.of(entry);
                        cpl.put(e.key(), e.status());
                    } catch (InvalidEvent invalid) {
                        // dead-lettered by the topology
                    }
                }
            }
        }
        return cpl;
    }
}
