"""smi: run the worker and a local Kafka broker; send, follow, replay and check the topics.

Settings come from SMI_* environment variables (SMI_BROKER, SMI_TOPIC_PREFIX, ...: the README's
"Settings" lists them all); an option given on the command line wins. Run
"smi COMMAND --help" for a command's options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import traceback
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, get_args

from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from streams import logs
from streams.errors import SmiError
from streams.settings import BrokerSettings, Settings, unknown_settings, web_address

if TYPE_CHECKING:  # the broker's module is imported by the commands that use it
    from streams.broker import Node

# shown as *** when a bad value is quoted back
SECRET_SETTINGS = frozenset(
    name for name, field in Settings.model_fields.items()
    if SecretStr in (field.annotation, *get_args(field.annotation)))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    if not _debug():
        # aiokafka logs a broker it cannot reach before raising it: the one line below says
        # it, with aiokafka's last error (the worker gives aiokafka its log back once it has
        # reached the broker)
        logs.quiet_aiokafka()
    settings: Settings | None = None
    try:
        # once per command; the local broker's own commands need none of the worker's
        settings = Settings() if args.worker_settings else None
        for typo in unknown_settings(os.environ) if settings else ():
            print(f"smi: warning: {typo}", file=sys.stderr)
        return int(args.run(args, settings) or 0)
    except SmiError as exc:
        _debug_traceback()
        print(f"smi: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # the settings: one line each, as the user wrote them
        _debug_traceback()
        for error in exc.errors(include_url=False):
            print(f"smi: bad setting{_setting(error['loc'], error['input'])}: "
                  f"{error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # a list or map that is not JSON
        _debug_traceback()
        field = re.search(r'field "(\w+)"', str(exc))
        name = f" SMI_{field.group(1).upper()}" if field else ""
        print(f"smi: bad setting{name}: not valid JSON", file=sys.stderr)
        return 2
    except KafkaConnectionError as exc:
        _debug_traceback()
        cause = f" ({logs.LAST.last})" if logs.LAST.last else ""
        where = f" at SMI_BROKER={settings.broker}" if settings else ""
        print(f"smi: the broker cannot be reached{where}: {exc}{cause}", file=sys.stderr)
        return 2
    except KafkaError as exc:  # e.g. a group or topic the user has no right to
        _debug_traceback()
        print(f"smi: the broker refused: {type(exc).__name__}: {exc}".rstrip(": "),
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # `smi tail ... | head`: the reader has all it wanted
        with contextlib.suppress(OSError, ValueError):  # stdout may be no file at all
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # none at exit
        return 141  # as a process a SIGPIPE ended
    except OSError as exc:  # a file or folder named on the command line or in a setting
        _debug_traceback()
        print(f"smi: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _setting(loc: tuple[int | str, ...], value: object) -> str:
    """`` SMI_NAME=value`` for a field's error; nothing for one about several fields (whose
    message names them)."""
    if not loc:
        return ""
    name = str(loc[0])
    shown = "***" if name in SECRET_SETTINGS else value
    inside = f" ({', '.join(map(str, loc[1:]))})" if loc[1:] else ""  # a map's key, a list's place
    return f" SMI_{name.upper()}{inside}={shown}"


def _debug() -> bool:
    # from the environment, not the settings: they may be what failed
    return os.environ.get("SMI_LOG_LEVEL", "").lower() == "debug"


def _debug_traceback() -> None:
    """People get one line; SMI_LOG_LEVEL=debug adds where it came from."""
    if _debug():
        traceback.print_exc(file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smi", description=__doc__)
    parser.set_defaults(worker_settings=True)
    parser.add_argument("--version", action="version", version=f"smi {version('smi-streams')}")
    commands = parser.add_subparsers(title="commands")

    kafka = commands.add_parser("kafka", help="the local Kafka broker (KRaft)")
    kafka_commands = kafka.add_subparsers(title="kafka commands")
    up = kafka_commands.add_parser("up", help="fetch, format and start; return when it serves")
    up.add_argument("--nodes", type=int, default=1, choices=(1, 3),
                    help="1, or 3 for a cluster (RF 3, ISR 2)")
    up.add_argument("--port", type=_port, help="first client port (default SMI_KAFKA_PORT, 9092)")
    up.add_argument("--scram", action="store_true",
                    help="clients log in with SCRAM-SHA-512 as SMI_SASL_USERNAME, with the "
                         "password of SMI_SASL_PASSWORD_FILE (or SMI_SASL_PASSWORD)")
    up.add_argument("--tls", action="store_true",
                    help="clients connect over TLS (SMI_KAFKA_SSL_CERTFILE/KEYFILE) and show "
                         "a certificate SMI_SSL_CAFILE signed")
    up.set_defaults(run=_kafka_up)
    down = kafka_commands.add_parser("down", help="stop the local broker(s)")
    down.add_argument("--port", type=_port)
    down.add_argument("--purge", action="store_true", help="also delete its data")
    down.set_defaults(run=_kafka_down, worker_settings=False)
    st = kafka_commands.add_parser("status", help="what runs where")
    st.add_argument("--port", type=_port)
    st.set_defaults(run=_kafka_status, worker_settings=False)

    worker = commands.add_parser("worker", help="run the SMI processor (a faust worker)")
    worker.add_argument("--processes", type=_positive, default=1,
                        help="workers of the group to run from this command, one per core: "
                        "each takes <SMI_DATA_DIR>/member-<n> and SMI_WEB_PORT + n")
    worker.set_defaults(run=_worker)

    demo = commands.add_parser("demo", help="broker, worker and the MP105 story, end to end")
    demo.set_defaults(run=_demo)

    produce = commands.add_parser("produce", help="send JSON lines, validated, to an input topic")
    produce.add_argument("topic", help="the topic's name in the contract (no prefix), "
                         "e.g. duis.service-requests")
    produce.add_argument("file", nargs="?", help="JSON lines (default: standard input)")
    produce.add_argument("--create", action="store_true",
                         help="create the contract's missing topics first")
    produce.set_defaults(run=_produce)

    tail = commands.add_parser("tail", help="follow a topic and print readable lines")
    tail.add_argument("topic", help="the topic's name in the contract (no prefix), "
                      "e.g. smi.status-corrections")
    form = tail.add_mutually_exclusive_group()
    form.add_argument("--raw", dest="form", action="store_const", const="raw",
                      default="readable", help="print each value as it is")
    form.add_argument("--json", dest="form", action="store_const", const="json",
                      help="one JSON object per message: key, partition, offset, timestamp "
                      "(ms since the epoch) and value")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=int, help="stop after this many messages")
    tail.add_argument("--idle-exit", type=float, help="stop after this many quiet seconds")
    tail.set_defaults(run=_tail)

    device = commands.add_parser("device", help="a device's SMI record and recent corrections")
    device.add_argument("device_id")
    device.add_argument("--url", help="a worker's web address (default 127.0.0.1:SMI_WEB_PORT)")
    device.set_defaults(run=_device)

    replay = commands.add_parser(
        "replay", help="rebuild the SMI from the input topics under one or more policies")
    replay.add_argument("--policy", action="append", metavar="NAME",
                        help="baseline, sr11.2, retry or mp105; repeat to compare "
                             "(default: the SMI_* switches)")
    replay.add_argument("--compare", action="store_true", help="all four policies side by side")
    replay.add_argument("--out", default="replay", help="folder for summaries (default replay/)")
    replay.set_defaults(run=_replay)

    verify = commands.add_parser(
        "verify", help="compare the group's SMI table with a replay of what it has decided")
    verify.add_argument("--show", type=int, default=20, metavar="N",
                        help="devices to list when some differ (default 20)")
    verify.set_defaults(run=_verify)
    rebuild = commands.add_parser(
        "rebuild", help="write the group's SMI table again from its input, when its "
        "changelog is lost (no worker of the group may run)")
    rebuild.set_defaults(run=_rebuild)

    sim = commands.add_parser(
        "simulate", help="a firmware roll-out over a fleet, through Kafka and a worker")
    sim.add_argument("--devices", type=int, default=1000, help="meters (default 1000)")
    sim.add_argument("--loss", type=float, default=0.2, help="share of SR11.3 responses lost")
    sim.add_argument("--seed", type=int, default=105)
    sim.add_argument("--follow-up-after", type=float, default=3.0, metavar="SECONDS")
    sim.add_argument("--policy", default="mp105",
                     help="baseline, sr11.2, retry or mp105 (default mp105)")
    sim.add_argument("--compare", action="store_true", help="every policy, same fleet")
    sim.add_argument("--out", default="simulation", help="folder for the report and chart")
    sim.set_defaults(run=_simulate)

    create = commands.add_parser("topics", help="create the contract's topics if missing")
    create.set_defaults(run=_topics)
    return parser


def _kafka_up(args: argparse.Namespace, settings: Settings) -> int:
    from streams import broker

    cluster = broker.up(BrokerSettings(), settings, nodes=args.nodes, port=args.port,
                        scram=args.scram, tls=args.tls)
    for node in cluster.nodes:
        print(f"kafka node {node.node_id}: 127.0.0.1:{node.port} (log {node.log_file})")
    print(f"bootstrap servers: {cluster.bootstrap}")
    return 0


def _kafka_down(args: argparse.Namespace, settings: None) -> int:
    from streams import broker

    nodes = [node for node, _ in broker.status(BrokerSettings(), port=args.port)]
    stopped = broker.down(BrokerSettings(), port=args.port, purge=args.purge)
    print(f"stopped {len(stopped)} kafka node(s)" + (" and deleted their data" if args.purge
                                                     else ""))
    still = [node for node in nodes if broker.answers(node.port)]
    for node in still:  # ours and not gone, or not ours: say where it was started from
        why = (f"did not stop (pid {pid})" if (pid := node.pid()) is not None
               else _elsewhere(node))
        print(f"smi: 127.0.0.1:{node.port} still answers: {why}", file=sys.stderr)
    return 1 if still else 0


def _kafka_status(args: argparse.Namespace, settings: None) -> int:
    from streams import broker

    running = 0
    for node, pid in broker.status(BrokerSettings(), port=args.port):
        print(f"kafka node {node.node_id}: 127.0.0.1:{node.port} {_state(node, pid)}")
        running += pid is not None
    return 0 if running else 3


def _state(node: Node, pid: int | None) -> str:
    from streams import broker

    if pid is not None:
        return f"running, pid {pid} (log {node.log_file})"
    if broker.answers(node.port):  # started with another data directory, or not by smi
        return f"answers: {_elsewhere(node)}"
    return f"stopped (log {node.log_file})"


def _elsewhere(node: Node) -> str:
    return (f"not a broker started under {node.home.parent.parent}; run smi kafka where it "
            "was started (its directory, SMI_DATA_DIR or SMI_KAFKA_HOME)")


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams import topics

    created = asyncio.run(topics.ensure(settings))
    print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli import io

    # bytes, not text in the locale's encoding: each line is checked as UTF-8 and sent as read
    if args.file:
        with open(args.file, "rb") as source:
            sent, refused = asyncio.run(
                io.produce(settings, args.topic, source, sys.stderr, args.create))
    else:
        sent, refused = asyncio.run(
            io.produce(settings, args.topic, sys.stdin.buffer, sys.stderr, args.create))
    print(f"sent {sent}, refused {refused} to {settings.topic(args.topic)}", file=sys.stderr)
    return 1 if refused else 0


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli import io

    asyncio.run(io.tail(settings, args.topic, args.form, args.from_beginning, args.max,
                        args.idle_exit))
    return 0


def _device(args: argparse.Namespace, settings: Settings) -> int:
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    from schemas.models import is_eui64

    base = args.url or web_address(settings.web_host, settings.web_port)
    if not is_eui64(args.device_id):
        print(f"smi: {args.device_id} is not a device ID: an EUI-64 such as "
              "00-DB-12-34-56-78-90-A0", file=sys.stderr)
        return 1
    try:
        # one path segment, whatever the ID holds: an ID with a space is simply not found
        url = f"{base}/devices/{urllib.parse.quote(args.device_id.upper(), safe='')}"
        request = urllib.request.Request(url)
        if settings.api_token:
            request.add_header("Authorization", f"Bearer {settings.api_token.get_secret_value()}")
        with urllib.request.urlopen(request, timeout=10) as response:
            record = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = "; set SMI_API_TOKEN" if exc.code == 401 and not settings.api_token else ""
        print(f"smi: {_http_error(exc)}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"smi: no worker answers at {base}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, http.client.InvalidURL) as exc:  # a malformed --url, or not JSON back
        print(f"smi: {base} is not a worker's web address: {exc}", file=sys.stderr)
        return 1
    history = record.pop("history", [])
    for key, value in record.items():  # as JSON writes them: null, not None
        print(f"{key:>26}: {value if isinstance(value, str) else json.dumps(value)}")
    print(f"\nrecent corrections ({len(history)}):")
    for h in history:
        print(f"  {h['at']}  {h['from_status']} {h['from_firmware']} -> {h['to_status']} "
              f"{h['to_firmware']}  {h['cause']}  from {h['source']}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from streams.tools import replay

    names = list(replay.POLICY_SWITCHES) if args.compare else (args.policy or [])
    chosen = replay.policies(names, settings.policy) if names else [settings.policy]
    records = asyncio.run(replay.read_inputs(settings))
    outcomes = [replay.run(records, policy) for policy in chosen]
    table = replay.write(outcomes, Path(args.out))
    print(table.read_text())
    print(f"summaries and corrections in {Path(args.out).resolve()}/")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.verify import verify

    differences, snap = asyncio.run(verify(settings))
    print(f"{len(snap.table)} devices in the table of group {settings.app_id}, up to "
          f"{sum(snap.committed.values())} committed input offsets")
    if not snap.settled:
        print("the group kept committing while its table was read: a device being decided "
              "now may show as different")
    for difference in differences[:args.show]:
        print(f"{difference.device_id}:")
        for field in difference.fields():
            print(f"  {field}")
    if differences:
        print(f"{len(differences)} devices differ from a replay of their input")
        return 1
    print("no device differs from a replay of its input")
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.rebuild import rebuild

    rebuilt = asyncio.run(rebuild(settings))
    print(f"table of group {settings.app_id} rebuilt in partitions "
          f"{', '.join(map(str, rebuilt.partitions))}: {rebuilt.devices} devices from "
          f"{rebuilt.decided} input records decided again. With SMI_STORE=rocksdb://, delete "
          f"each worker's {settings.data_dir / settings.app_id / 'v1' / 'tables'} (it holds "
          "the lost table), then start the workers")
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from streams.tools import simulate
    from streams.tools.replay import POLICY_SWITCHES, policies

    names = list(POLICY_SWITCHES) if args.compare else [args.policy]
    policies(names, settings.policy)  # an unknown name is refused before anything starts
    config = simulate.Config(devices=args.devices, loss=args.loss, seed=args.seed,
                             follow_up_after=args.follow_up_after)
    reports = simulate.simulate(settings, names, config, Path(args.out))
    print(simulate.table(reports))
    print(f"report, series and chart in {Path(args.out).resolve()}/")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import demo

    return demo.run(settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.processes > 1:
        from streams.tools.supervise import run_members

        return run_members(settings, args.processes)
    from streams.worker import run

    return run(settings)


def _http_error(exc: Any) -> str:
    """The worker's own words for a refusal (JSON ``error``), else the status line."""
    try:
        said = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError):
        said = None
    return str(said or f"{exc.code} {exc.reason} from {exc.url}")


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to 65535)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


if __name__ == "__main__":
    sys.exit(main())
