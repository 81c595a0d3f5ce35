package smi.peer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Stream;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/** The public scenarios (tests/scenarios), each through the whole topology in a
 *  TopologyTestDriver, checked as tests/integration/test_scenarios.py checks the worker: per
 *  output topic, the expected messages matched by distinct actual ones, in order per key, and
 *  nothing else; the final records of the named devices. */
class ScenarioTest {
    static final Path SCENARIOS = Path.of("../../../tests/scenarios");

    @TempDir
    Path state;

    @TestFactory
    Stream<DynamicTest> scenarios() throws IOException {
        List<Path> files;
        try (Stream<Path> list = Files.list(SCENARIOS)) {
            files = list.filter(p -> p.toString().endsWith(".json")).sorted().toList();
        }
        assertTrue(files.size() >= 15, "expected the public scenarios in " + SCENARIOS);
        return files.stream().map(f -> DynamicTest.dynamicTest(f.getFileName().toString(), () -> run(f)));
    }

    void run(Path file) throws IOException {
        JsonNode scenario = Json.MAPPER.readTree(file.toFile());
        Map<String, String> env = new HashMap<>();
        scenario.get("policy").fields().forEachRemaining(e ->
                env.put("SMI_" + e.getKey().toUpperCase(), e.getValue().asText()));
        Config config = new Config(env, new String[0]);
        Properties props = Main.properties(config);
        props.put(StreamsConfig.STATE_DIR_CONFIG, state.resolve(file.getFileName().toString()).toString());
        try (TopologyTestDriver driver = new TopologyTestDriver(Main.topology(config, Map.of()), props)) {
            Map<String, TestInputTopic<byte[], byte[]>> inputs = new HashMap<>();
            for (String name : Topics.INPUTS) {
                inputs.put(name, driver.createInputTopic(name, new ByteArraySerializer(), new ByteArraySerializer()));
            }
            Instant at = Instant.parse("2026-11-24T08:00:00Z");
            for (JsonNode step : scenario.get("steps")) {
                JsonNode value = step.get("value");
                byte[] bytes = value.isTextual() ? value.asText().getBytes(StandardCharsets.UTF_8) : Json.bytes(value);
                JsonNode key = step.get("key");
                byte[] keyBytes = key == null || key.isNull() ? null : key.asText().getBytes(StandardCharsets.UTF_8);
                at = at.plusMillis(1);
                inputs.get(step.get("send").asText()).pipeInput(new TestRecord<>(keyBytes, bytes, at));
            }
            JsonNode expect = scenario.get("expect");
            for (String name : Topics.OUTPUTS) {
                TestOutputTopic<String, byte[]> topic =
                        driver.createOutputTopic(name, new StringDeserializer(), new ByteArrayDeserializer());
                List<TestRecord<String, byte[]>> actual = topic.readRecordsToList();
                check(name, actual, expect.has(name) ? expect.get(name) : Json.MAPPER.createArrayNode());
            }
            KeyValueStore<String, byte[]> devices = driver.getKeyValueStore(DecideProcessor.DEVICES);
            if (expect.has("smi")) {
                Iterator<Map.Entry<String, JsonNode>> named = expect.get("smi").fields();
                while (named.hasNext()) {
                    Map.Entry<String, JsonNode> e = named.next();
                    byte[] record = devices.get(e.getKey());
                    assertNotNull(record, e.getKey() + " has no SMI record");
                    JsonNode actual = Json.MAPPER.readTree(record);
                    assertTrue(matches(actual, e.getValue()), e.getKey() + ": " + actual + " is not " + e.getValue());
                }
            }
        }
    }

    static boolean matches(JsonNode actual, JsonNode expected) {
        Iterator<Map.Entry<String, JsonNode>> fields = expected.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> f = fields.next();
            JsonNode a = actual.get(f.getKey());
            JsonNode want = f.getValue();
            if (a == null) {
                a = Json.NODES.nullNode();
            }
            if (!a.equals(want) && !(a.isNumber() && want.isNumber() && a.asDouble() == want.asDouble())) {
                return false;
            }
        }
        return true;
    }

    static void check(String name, List<TestRecord<String, byte[]>> actual, JsonNode expected) throws IOException {
        List<JsonNode> values = new ArrayList<>();
        for (TestRecord<String, byte[]> r : actual) {
            values.add(Json.MAPPER.readTree(r.value()));
        }
        assertEquals(expected.size(), actual.size(), name + ": expected " + expected + ", got " + values);
        Set<Integer> used = new HashSet<>();
        Map<String, Integer> last = new HashMap<>();
        for (JsonNode want : expected) {
            int index = -1;
            for (int i = 0; i < values.size(); i++) {
                if (!used.contains(i) && matches(values.get(i), want)) {
                    index = i;
                    break;
                }
            }
            if (index < 0) {
                fail(name + ": nothing matches " + want + " in " + values);
            }
            used.add(index);
            String key = String.valueOf(actual.get(index).key());
            assertTrue(index > last.getOrDefault(key, -1), name + ": " + want + " out of order");
            last.put(key, index);
        }
    }
}
