"""The faust app, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams import agents, codecs, recovery, tables, topics, web
from streams.emit import Emitter
from streams.settings import Settings, web_address
from streams.transport import SCHEME, Wiring


@dataclass(frozen=True)
class Components:
    """What :func:`create_app` builds beside faust's own parts."""

    settings: Settings
    topics: topics.Topics
    tables: tables.Tables
    processor: agents.Processor
    wiring: Wiring  # for the consumer faust makes when the worker starts


class SmiApp(faust.App):
    """faust's app with the worker's components (:attr:`smi`), set once when it is built."""

    smi: Components


def create_app(settings: Settings) -> SmiApp:
    codecs.register()  # before any topic or table names them
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = SmiApp(
        settings.app_id,
        broker=[f"{SCHEME}://{host.strip()}" for host in settings.broker.split(",")],
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir / settings.app_id),
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_host,  # faust would listen on every interface
        web_port=settings.web_port,
        # faust's own pages answer without the token: /table serves any record, /router
        # lists the group's hosts
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        # other workers redirect /devices/{id} here when this worker owns the key
        canonical_url=web_address(settings.web_host, settings.web_port),
        web_in_thread=False,
        autodiscover=False,
        # no linger: batches come whole (streams/emit.py), and aiokafka takes a partition's next
        # batch only once its last one has left, so a linger held every batch up by as long
        producer_linger_ms=0,
        producer_max_batch_size=settings.producer_batch_kib << 10,
        producer_request_timeout=settings.delivery_timeout_seconds,  # aiokafka's batch expiry
        broker_session_timeout=settings.session_timeout_seconds,
        # a third of the session at most, as Kafka advises
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        # faust: a request may not time out before the session does
        broker_request_timeout=max(90.0, settings.session_timeout_seconds + 30),
        # streams.transport: faust's wait would end the transactions before the rebalance
        stream_wait_empty=False,
        TableManager=recovery.TableManager,  # recovery as a bulk load
        # a fetch is decided as it comes (streams/transport.py): keep it to a batch, and what
        # the consumer buffers ahead to aiokafka's default
        broker_max_poll_records=settings.batch_size,
        consumer_max_fetch_size=1 << 20,
    )
    app_topics = topics.build(app, settings)
    app_tables = tables.build(app, settings)
    exactly_once = settings.processing_guarantee == "exactly_once"
    processor = agents.Processor(
        settings, app_topics, app_tables,
        emitter=Emitter(app, settings.topic(topics.REQUESTS), exactly_once,
                        changelog=app_tables.device_to_record.changelog_topic.get_topic_name()),
        cpl_emitter=Emitter(app, settings.topic(topics.CPL), exactly_once),
    )
    routes = agents.register(app, processor)
    web.register(app, processor)
    # the device topics' records go to the partition groups, and every commit sends, checks
    # and (under exactly_once) holds what the emitters hold
    wiring = Wiring(routes, (processor.emitter, processor.cpl_emitter), settings.fetch_max_wait,
                    processor.metrics.commit_seconds.observe)
    app.smi = Components(settings, app_topics, app_tables, processor, wiring)
    return app


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """SASL (with TLS for SASL_SSL) or TLS alone, as the settings say; None for PLAINTEXT."""
    ssl_context = settings.kafka_client_options().get("ssl_context")
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_secret()
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl_context,  # type: ignore[arg-type]
        )
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context)  # type: ignore[arg-type]
    return None
