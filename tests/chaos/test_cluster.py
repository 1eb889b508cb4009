"""Scenarios 7 and 8: a private three-node RabbitMQ cluster (``cluster.py``), with every
node's address in ``SUBREQ_AMQP_URL``.

7. Under load, kill -9 of the node that leads the command queue; a few seconds later it
   is started again; once the cluster is whole, the new leader is cut off from the
   other two (a partition: with ``pause_minority`` it pauses and drops its clients),
   then joined again. The workers and the harness fail over to the nodes that remain.
8. Under load, the memory alarm of one node: RabbitMQ blocks publishing on every node
   for a few seconds. Every worker that was blocked says so in its log, once when
   blocked and once when unblocked, and in ``subreq_broker_blocked``; then everything
   resumes.

Pass, in both: the verdict of the other scenarios (every command exactly one effect,
every reply, every event, no email twice), with the very workers started first, each
consuming again; the command queue and both dead-letter queues are quorum queues with a
member on each of the three nodes, before and after.
"""

from __future__ import annotations

import threading

import orjson
import pika
import pytest

from tests.chaos.cluster import Cluster, free_port
from tests.chaos.faults import NodeFailures, ResourceAlarm
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from tests.chaos.workload import SEATS
from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    NOTIFICATIONS_DEAD_QUEUE,
)
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

WORKERS = 2
BLOCKED = "the broker blocks publishing"
UNBLOCKED = "the broker unblocked publishing"
CLOSED_BLOCKED = "the blocked connection was closed"


QUEUES = (COMMANDS_QUEUE, DEAD_QUEUE, NOTIFICATIONS_DEAD_QUEUE)


def replication(cluster: Cluster, vhost: str) -> dict[str, tuple[str, int]]:
    """Type and number of members of each of the contract's queues."""
    found = {}
    for queue in QUEUES:
        row = cluster.queue(vhost, queue)
        members = row["members"]
        assert isinstance(members, list)
        assert set(members) <= {n.name for n in cluster.nodes}, members
        found[queue] = (str(row["type"]), len(members))
    return found


def test_leader_killed_restarted_then_a_node_partitioned_loses_nothing_and_doubles_nothing(
    cluster: Cluster,
    cluster_stack: Stack,
    sink: MailSink,
    sizes: Sizes,
    catalog: Catalog,
    request: pytest.FixtureRequest,
) -> None:
    stack = cluster_stack
    replicated = {queue: ("quorum", len(cluster.nodes)) for queue in QUEUES}
    with LoadScenario("cluster", stack, sink, sizes, catalog, request, quorum=True) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        assert replication(cluster, stack.vhost) == replicated
        faults = NodeFailures(
            cluster,
            stack.vhost,
            COMMANDS_QUEUE,
            at=sizes.cluster_seconds * 0.15,
            down=sizes.node_down,
            partition=sizes.partition,
        )
        verdict = scenario.run(
            accounts, sizes.cluster_commands, [faults], seconds=sizes.cluster_seconds
        )
    assert_kept(verdict, stack)
    assert faults.count == 3, f"the load ended before every fault: {faults.figures}"
    assert replication(cluster, stack.vhost) == replicated
    assert verdict.figures["harness_reconnects"] >= 1, "the faults never reached the harness"
    reconnected = [w.name for w in stack.workers if "connected to 127.0.0.1:" in w.log()]
    assert reconnected == [w.name for w in stack.workers], "a worker never failed over"


ALARM_PREVIEWS = 30000
"""The most previews kept coming while the alarm is raised: the paced load leaves the
workers idle most of the time, and a worker with nothing to publish is never blocked (nor
told so). They keep coming until the broker blocks their publisher too (the alarm is in
effect, however long ``rabbitmqctl`` took to start), so the workers hold some then."""
IDLE_ACCOUNT = "acct-idle"
"""The previews' account, outside the load: never pending, so no preview is refused (a
refusal would be audited, which the load's checks would count)."""


def keep_previews_coming(amqp_url: str, account_id: str, stop: threading.Event) -> None:
    """Previews (an accepted preview records nothing) whose replies go to no queue, so the
    load's own checks never see them, about as fast as two workers answer them, until
    ``stop`` (the alarm cleared) or ``ALARM_PREVIEWS``."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url.split(",")[0]))
    body = orjson.dumps(
        {"account_id": account_id, "actor_id": f"{account_id}-admin", "changes": SEATS}
    )
    try:
        channel = connection.channel()
        for n in range(ALARM_PREVIEWS):
            if stop.is_set():
                break
            channel.basic_publish(
                COMMANDS_EXCHANGE,
                "request.preview",
                body,
                pika.BasicProperties(
                    message_id=f"alarm-preview-{n}", reply_to="chaos.alarm.nowhere"
                ),
            )
            if n % 200 == 199:
                connection.sleep(0.05)  # writes what is queued, then paces the next ones
    finally:
        connection.close()


def test_a_memory_alarm_blocks_publishing_then_everything_resumes(
    cluster: Cluster,
    cluster_stack: Stack,
    sink: MailSink,
    sizes: Sizes,
    catalog: Catalog,
    request: pytest.FixtureRequest,
) -> None:
    stack = cluster_stack
    ports = [free_port() for _ in range(WORKERS)]
    env = [{"SUBREQ_METRICS_PORT": str(port)} for port in ports]
    with LoadScenario("alarm", stack, sink, sizes, catalog, request, quorum=True) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS, env)
        stack.seed(catalog, [IDLE_ACCOUNT])
        alarm = ResourceAlarm(
            cluster,
            cluster.nodes[-1],
            ports,
            at=sizes.alarm_seconds / 4,
            duration=sizes.alarm,
            busy=lambda stop: keep_previews_coming(stack.amqp_url, IDLE_ACCOUNT, stop),
        )
        verdict = scenario.run(accounts, sizes.alarm_commands, [alarm], seconds=sizes.alarm_seconds)
        logs = {w.name: w.log() for w in stack.workers}
        verdict.figures["blocked_lines"] = sum(log.count(BLOCKED) for log in logs.values())
        verdict.figures["unblocked_lines"] = sum(log.count(UNBLOCKED) for log in logs.values())
        verdict.figures["gauge_blocked"] = sorted(c for s in alarm.blocked_seen.values() for c in s)
    assert_kept(verdict, stack)
    assert alarm.count == 1, "the load ended before the alarm"
    blocked = [name for name, log in logs.items() if BLOCKED in log]
    assert blocked, "no worker was blocked: the alarm came while nothing was published"
    for name in blocked:  # one line each way per connection blocked
        log = logs[name]
        assert log.count(BLOCKED) == log.count(UNBLOCKED) + log.count(CLOSED_BLOCKED), name
    assert any(alarm.blocked_seen.values()), "subreq_broker_blocked never read 1"
    assert not any(alarm.blocked_after.values()), alarm.blocked_after
