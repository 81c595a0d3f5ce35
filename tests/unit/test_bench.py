"""The benchmark's results say which settings they were measured under, secrets left out,
where a latency was spent, and what CPU each contender used."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from bench.common import cpu_seconds
from bench.latency import CpuWindow, summary
from bench.run import environment, report


def test_results_name_the_settings_taken_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMI_BATCH_SIZE", "250")
    monkeypatch.setenv("SMI_API_TOKEN", "s3cret")
    monkeypatch.setenv("SMI_SASL_PASSWORD_FILE", "/run/secrets/kafka")
    monkeypatch.setenv("SMI_SSL_KEY_PASSWORD", "s3cret")
    monkeypatch.setenv("OTHER_BATCH_SIZE", "1")
    found = environment()
    assert found["SMI_BATCH_SIZE"] == "250"
    assert not {"SMI_API_TOKEN", "SMI_SASL_PASSWORD_FILE", "SMI_SSL_KEY_PASSWORD",
                "OTHER_BATCH_SIZE"} & set(found)


def test_a_latency_is_split_at_the_answer_handed_to_the_workers_producer() -> None:
    sent = {f"r{n}": float(n) for n in range(100)}
    handed = {r: at + 0.010 + (0.090 if r == "r7" else 0.0) for r, at in sent.items()}
    seen = {r: at + 0.030 for r, at in handed.items()}  # 30 ms to deliver each
    row = summary(sent, seen, 100, 1.0, 0.0, handed)
    assert (row["p50_ms"], row["p99_ms"], row["max_ms"]) == (40.0, 130.0, 130.0)
    assert (row["to_producer_p50_ms"], row["to_producer_p99_ms"]) == (10.0, 100.0)
    # the Kafka Streams peer stamps its answers with its input's time: no split
    assert "to_producer_p50_ms" not in summary(sent, seen, 100, 1.0, 0.0)


def test_a_process_cpu_is_read_for_another_process_and_for_this_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.5: pass\ninput()"],
                            stdin=subprocess.PIPE)
    try:
        for _ in range(100):
            if cpu_seconds(busy.pid) >= 0.5:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert 0.5 <= cpu_seconds(busy.pid) < 5
    finally:
        busy.kill()
        busy.wait()
    assert cpu_seconds() == pytest.approx(sum(os.times()[:2]), abs=0.05)


def test_the_throughput_table_gives_cpu_per_message_against_the_pass_throughs() -> None:
    worker = "worker rocksdb at_least_once"
    run = {"rate": 9_000.0, "aiokafka": 40_000.0, "ratio": 0.225, "cpu_us": 92.0,
           "aiokafka_cpu_us": 20.0, "cpu_ratio": 4.6}
    results = {"machine": {}, "events": 120_003, "devices": 20_000,
               "rates": {"kcat": 80_000.0, "aiokafka": 40_000.0, worker: 9_000.0},
               "ratios": {worker: 0.225}, "runs": {worker: [run]},
               "cpu_us": {"aiokafka": 21.0, worker: 92.0}, "cpu_ratios": {worker: 4.6},
               "work": {worker: [{"corrections": 11_702, "cpl-removed": 0}]}}
    rows = {line.split(" | ")[0]: line.split(" | ") for line in report(results)
            if line.startswith("| ")}
    assert rows[f"| {worker}"][4:6] == ["92 (4.6x)", "11,702 (0) |"]
    assert rows["| aiokafka"][4] == "21"
    assert rows["| kcat"][4] == "-"


def test_the_peer_table_gives_each_ones_cpu_per_message() -> None:
    def runs(rate: float, cpu: float) -> list[dict[str, float]]:
        return [{"rate": rate, "aiokafka": 40_000.0, "ratio": rate / 40_000, "cpu_us": cpu},
                {"rate": rate, "aiokafka": 40_000.0, "ratio": rate / 40_000, "cpu_us": cpu + 20}]
    peer = {"events": 220_011, "devices": 20_000, "comparisons": {"at_least_once": [
        {"equal": True, "differences": {}}]}, "runs": {
        "worker at_least_once": runs(8_000.0, 110.0), "peer at_least_once": runs(8_800.0, 40.0)}}
    row = next(line for line in report({"machine": {}, "peer": peer})
               if line.startswith("| at_least_once"))
    assert row.split(" | ")[1:] == ["8,000", "8,800", "0.91", "0.20", "0.22", "120 / 50", "yes |"]


def test_a_latency_run_gives_the_cpu_its_process_used_while_the_timed_load_was_sent() -> None:
    window = CpuWindow([os.getpid()])
    assert window.summary(1_000) == {}  # not started: nothing to say
    window.start()
    started = time.process_time()
    while time.process_time() - started < 0.3:
        pass
    window.stop()
    used = window.summary(1_000)
    assert 250 <= used["cpu_us_per_event"] < 1_000  # 0.3 s over 1,000 events
    assert 0.3 <= used["cpu_cores"] <= 1.2  # CPU over wall time: the machine may be shared
    rows = [{"config": config, "offered_per_second": 5_000, "requests": 60_000,
             "answered": 60_000, **cpu} for config, cpu in (
                 ("rocksdb at_least_once", {"cpu_us_per_event": 148.26, "cpu_cores": 0.741}),
                 ("before the column", {}))]
    cells = [line.split(" | ")[-1] for line in report({"machine": {}, "latency": rows})
             if line.startswith(("| rocksdb", "| before"))]
    assert cells == ["148 (0.74) |", "- |"]


@pytest.mark.parametrize("script", ["bench/run.py", "bench/profile.py"])
def test_a_benchmark_whose_broker_port_is_taken_says_so_in_one_line(script: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, script], capture_output=True, text=True,
                              env={**os.environ, "SMI_BENCH_KAFKA_PORT": str(port)},
                              timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{script.removeprefix('bench/')}: port {port} on 127.0.0.1 is in use: stop what "
        "holds it or choose another first port (--port / SMI_KAFKA_PORT)"]
