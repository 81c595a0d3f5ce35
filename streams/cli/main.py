"""``smi``: run the worker, manage the local Kafka broker, create topics.

Every option also has its ``SMI_*`` environment variable (see ``streams/settings.py``); an
option given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.errors import StreamsError
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except StreamsError as exc:
        print(f"smi: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smi", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    kafka = commands.add_parser("kafka", help="the local Kafka broker (KRaft)")
    kafka_commands = kafka.add_subparsers(title="kafka commands")
    up = kafka_commands.add_parser("up", help="fetch, format and start; return when it serves")
    up.add_argument("--nodes", type=int, default=1, help="1, or 3 for a cluster (RF 3, ISR 2)")
    up.add_argument("--port", type=int, help="first client port (default SMI_KAFKA_PORT, 9092)")
    up.set_defaults(run=_kafka_up)
    down = kafka_commands.add_parser("down", help="stop the local broker(s)")
    down.add_argument("--port", type=int)
    down.add_argument("--purge", action="store_true", help="also delete its data")
    down.set_defaults(run=_kafka_down)
    st = kafka_commands.add_parser("status", help="what runs where")
    st.add_argument("--port", type=int)
    st.set_defaults(run=_kafka_status)

    worker = commands.add_parser("worker", help="run the SMI processor (a faust worker)")
    worker.set_defaults(run=_worker)

    demo = commands.add_parser("demo", help="broker, worker and the MP105 story, end to end")
    demo.set_defaults(run=_demo)

    create = commands.add_parser("topics", help="create the contract's topics if missing")
    create.set_defaults(run=_topics)
    return parser


def _kafka_up(args: argparse.Namespace) -> int:
    from streams import broker

    cluster = broker.up(Settings(), nodes=args.nodes, port=args.port)
    for node in cluster.nodes:
        print(f"kafka node {node.node_id}: 127.0.0.1:{node.port} (log {node.log_file})")
    print(f"bootstrap servers: {cluster.bootstrap}")
    return 0


def _kafka_down(args: argparse.Namespace) -> int:
    from streams import broker

    stopped = broker.down(Settings(), port=args.port, purge=args.purge)
    print(f"stopped {len(stopped)} kafka node(s)" + (" and deleted their data" if args.purge
                                                     else ""))
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    from streams import broker

    running = 0
    for node, pid in broker.status(Settings(), port=args.port):
        state = f"running, pid {pid}" if pid else "stopped"
        print(f"kafka node {node.node_id}: 127.0.0.1:{node.port} {state} (log {node.log_file})")
        running += pid is not None
    return 0 if running else 3


def _topics(args: argparse.Namespace) -> int:
    from streams import topics

    created = asyncio.run(topics.ensure(Settings()))
    print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams import demo

    return demo.run(Settings())


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run

    return run(Settings())


if __name__ == "__main__":
    sys.exit(main())
