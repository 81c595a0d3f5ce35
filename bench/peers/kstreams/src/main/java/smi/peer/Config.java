package smi.peer;

import com.fasterxml.jackson.core.type.TypeReference;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;

/** Settings from the worker's {@code SMI_*} environment variables, each of which may also be
 *  given as an argument {@code --name=value} ({@code --topic-prefix=test.} for
 *  {@code SMI_TOPIC_PREFIX}). */
final class Config {
    private final Map<String, String> values = new HashMap<>();

    Config(Map<String, String> env, String[] args) {
        env.forEach((k, v) -> {
            if (k.startsWith("SMI_")) {
                values.put(k, v);
            }
        });
        for (String arg : args) {
            String a = arg.startsWith("--") ? arg.substring(2) : arg;
            int eq = a.indexOf('=');
            if (eq < 1) {
                throw new IllegalArgumentException("expected --name=value, got " + arg);
            }
            values.put("SMI_" + a.substring(0, eq).toUpperCase().replace('-', '_'), a.substring(eq + 1));
        }
    }

    String get(String name, String fallback) {
        String v = values.get("SMI_" + name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    String broker() {
        return get("BROKER", "127.0.0.1:9092");
    }

    String appId() {
        return get("APP_ID", "smi-kstreams");
    }

    String prefix() {
        return values.getOrDefault("SMI_TOPIC_PREFIX", "");
    }

    String topic(String contractName) {
        return prefix() + contractName;
    }

    /** The contract name of a real (prefixed) topic. */
    String contractName(String topic) {
        return topic.substring(prefix().length());
    }

    int partitions() {
        return Integer.parseInt(get("PARTITIONS", "8"));
    }

    short replicationFactor() {
        return Short.parseShort(get("REPLICATION_FACTOR", "1"));
    }

    /** at_least_once, or exactly_once (Kafka Streams' exactly_once_v2). */
    String guarantee() {
        String g = get("PROCESSING_GUARANTEE", "at_least_once");
        return switch (g) {
            case "at_least_once" -> "at_least_once";
            case "exactly_once", "exactly_once_v2" -> "exactly_once_v2";
            default -> throw new IllegalArgumentException("SMI_PROCESSING_GUARANTEE: " + g);
        };
    }

    long commitIntervalMs() {
        return Math.round(Double.parseDouble(get("COMMIT_INTERVAL", "0.1")) * 1000);
    }

    /** Kafka Streams' max.task.idle.ms: how long a task with an empty input partition that is
     *  caught up waits for a producer to write to it. 0 (the default) waits only for records
     *  already on the broker to be fetched, which is what the worker's SMI_MAX_TASK_IDLE bounds;
     *  not that setting, since its meaning differs. */
    long maxTaskIdleMs() {
        return Long.parseLong(get("KSTREAMS_MAX_TASK_IDLE_MS", "0"));
    }

    int streamThreads() {
        return Integer.parseInt(get("STREAM_THREADS", "1"));
    }

    /** Further Kafka Streams (or client) properties, as a JSON object. */
    Map<String, String> extraProperties() {
        String text = get("KSTREAMS_PROPERTIES", null);
        return text == null ? Map.of() : json(text, new TypeReference<Map<String, String>>() {});
    }

    Path stateDir() {
        String dir = get("STATE_DIR", null);
        return dir != null ? Path.of(dir) : Path.of(get("DATA_DIR", ".data"), "kstreams");
    }

    Policy policy() {
        Policy d = Policy.defaults();
        return new Policy(
                bool("SR11_2_WHEN_SUSPENDED", d.sr112WhenSuspended()),
                bool("SR11_3_RETRY_UPDATES_SMI", d.sr113RetryUpdatesSmi()),
                bool("SECMP0007", d.secmp0007()),
                values.containsKey("SMI_SUSPENDED_EXCEPTIONS")
                        ? new HashSet<>(json(values.get("SMI_SUSPENDED_EXCEPTIONS"), new TypeReference<List<String>>() {}))
                        : d.suspendedExceptions(),
                values.containsKey("SMI_RESPONSE_CODES")
                        ? json(values.get("SMI_RESPONSE_CODES"), new TypeReference<Map<String, String>>() {})
                        : d.responseCodes(),
                Integer.parseInt(get("PENDING_REQUESTS_PER_DEVICE", String.valueOf(d.pendingLimit()))),
                seconds(get("PENDING_MAX_AGE", null), d.pendingMaxAgeSeconds()));
    }

    private boolean bool(String name, boolean fallback) {
        String v = get(name, null);
        if (v == null) {
            return fallback;
        }
        return switch (v.toLowerCase()) {
            case "true", "1", "yes", "on" -> true;
            case "false", "0", "no", "off" -> false;
            default -> throw new IllegalArgumentException("SMI_" + name + ": not a boolean: " + v);
        };
    }

    /** Seconds, or an ISO 8601 duration (P7D, PT12H). */
    static double seconds(String text, double fallback) {
        if (text == null) {
            return fallback;
        }
        if (text.matches("[0-9]+(\\.[0-9]+)?")) {
            return Double.parseDouble(text);
        }
        java.util.regex.Matcher py = java.util.regex.Pattern
                .compile("(?:([0-9]+) days?, )?([0-9]+):([0-9]{2}):([0-9]{2}(?:\\.[0-9]+)?)").matcher(text);
        if (py.matches()) {  // a timedelta as Python prints it: "7 days, 0:00:00"
            return (py.group(1) == null ? 0 : Long.parseLong(py.group(1)) * 86400)
                    + Long.parseLong(py.group(2)) * 3600 + Long.parseLong(py.group(3)) * 60
                    + Double.parseDouble(py.group(4));
        }
        String t = text.toUpperCase();
        int time = t.indexOf('T');
        String datePart = time < 0 ? t.substring(1) : t.substring(1, time);
        Duration d = time < 0 ? Duration.ZERO : Duration.parse("PT" + t.substring(time + 1));
        if (!datePart.isEmpty()) {
            if (!datePart.matches("([0-9]+W)?([0-9]+D)?")) {
                throw new IllegalArgumentException("not a duration: " + text);
            }
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("(?:([0-9]+)W)?(?:([0-9]+)D)?").matcher(datePart);
            m.matches();
            long days = (m.group(1) == null ? 0 : 7 * Long.parseLong(m.group(1)))
                    + (m.group(2) == null ? 0 : Long.parseLong(m.group(2)));
            d = d.plusDays(days);
        }
        return d.toMillis() / 1000.0;
    }

    private static <T> T json(String text, TypeReference<T> type) {
        try {
            return Json.MAPPER.readValue(text, type);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
