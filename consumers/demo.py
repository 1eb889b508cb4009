"""``subreq demo``: a worker and a client tell the product's story over a real broker.

It uses a fresh SQLite database in a temporary folder, the broker of
``SUBREQ_AMQP_URL``, and prints every command, its reply and the events the
outbox relay publishes, then stops the worker cleanly.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from consumers.amqp.connection import unreachable
from consumers.amqp.tap import EventTap
from consumers.client import SubreqClient
from consumers.worker import Worker, WorkerOptions
from workflow.errors import SubreqError
from workflow.notifications.deliveries import recent
from workflow.notifications.mailconfig import parse_smtp_url
from workflow.ops.reports import notifications_requested, reading
from workflow.persistence.database import Database
from workflow.persistence.migrate import upgrade
from workflow.settings import Settings

Echo = Callable[[str], None]

ACME_SUBSCRIPTION = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "products": [{"product": "support", "plan": "professional", "seats": 10}],
}
CHANGES = [
    {"type": "add_seats", "product": "support", "quantity": 5},
    {"type": "add_product", "product": "guide", "plan": "professional"},
]


class BrokerUnreachable(SubreqError, RuntimeError):
    """Raised when the demo cannot reach RabbitMQ; the message says how to start one."""


def describe_event(event: dict[str, Any]) -> str:
    data = event["data"]
    if event["type"] == "notification.requested":
        to = data["recipient"]
        return f'email to {to["name"]} <{to["email"]}> [{data["locale"]}]: "{data["subject"]}"'
    if event["type"] == "notification.sent":
        to = data["recipient"]
        return f"email delivered to {to['name']} <{to['email']}>"
    if event["type"] == "subscription.changed":
        new = ", ".join(
            f"{p['product']} {p['plan']} x{p['seats']}" for p in data["new"]["products"]
        )
        return f"subscription is now: {new}"
    request = data.get("request", {})
    return f"request {request.get('request_id', '')[:8]} is {request.get('state')}"


def describe_reply(reply: dict[str, Any]) -> list[str]:
    if not reply.get("ok"):
        error = reply["error"]
        lines = [f"refused: {error['code']}: {error['message']}"]
        lines += [f"   - {d.get('rule', '')} {d['reason']}".rstrip() for d in error["details"][1:]]
        return lines
    result = reply["result"]
    summary = result.get("summary") or result.get("request", {}).get("summary")
    lines = []
    if "request" in result:
        request = result["request"]
        lines.append(f"ok: request {request['request_id'][:8]} is {request['state']}")
    elif summary is None:
        lines.append("ok: " + orjson.dumps(result).decode())
    if summary is not None:
        period = summary["period"]
        lines += [
            f"   {line['description']}: +{line['cost']} {summary['currency']}/{period}"
            for line in summary["lines"]
        ]
        lines.append(f"   total: +{summary['total']} {summary['currency']} per {period}")
    return lines


class Story:
    def __init__(self, client: SubreqClient, tap: EventTap, echo: Echo) -> None:
        self.client, self.tap, self.echo = client, tap, echo

    def step(self, title: str, routing_key: str, body: dict[str, Any]) -> dict[str, Any]:
        self.echo(f"\n== {title}")
        self.echo(f"-> {routing_key} {orjson.dumps(body).decode()}")
        reply = self.client.call(routing_key, body)
        for line in describe_reply(reply):
            self.echo(f"<- {line}")
        for event in self.tap.drain():
            self.echo(f"   event {event['type']}: {describe_event(event)}")
        return reply


def tell(story: Story) -> None:
    step = story.step
    step(
        "An online-assisted account (sales-assisted, changes allowed)",
        "account.upsert",
        {
            "account_id": "acme",
            "name": "Acme Corp",
            "type": "sales_assisted",
            "allows_subscription_changes": True,
            "subscription": ACME_SUBSCRIPTION,
        },
    )
    for user_id, name, role, locale in [
        ("olivia", "Olivia Owner", "owner", "en"),
        ("adam", "Adamo Rossi", "admin", "it"),
        ("ada", "Ada Agent", "agent", "en"),
    ]:
        step(
            f"Directory: {name} is {role}",
            "member.upsert",
            {
                "account_id": "acme",
                "user_id": user_id,
                "name": name,
                "email": f"{user_id}@acme.example",
                "role": role,
                "locale": locale,
            },
        )
    step(
        "A self-service account",
        "account.upsert",
        {
            "account_id": "solo",
            "name": "Solo Ltd",
            "type": "self_service",
            "allows_subscription_changes": False,
            "subscription": ACME_SUBSCRIPTION,
        },
    )
    step(
        "Its admin",
        "member.upsert",
        {
            "account_id": "solo",
            "user_id": "sam",
            "name": "Sam Solo",
            "email": "sam@solo.example",
            "role": "admin",
        },
    )
    step(
        "The admin previews the change: cost without commitment (R10)",
        "request.preview",
        {"account_id": "acme", "actor_id": "adam", "changes": CHANGES},
    )
    submitted = step(
        "The admin submits it: the owner is emailed (R16)",
        "request.submit",
        {
            "account_id": "acme",
            "actor_id": "adam",
            "changes": CHANGES,
            "note": "Five more agents start on Monday",
        },
    )
    step(
        "A second submit is refused while one is pending (R11)",
        "request.submit",
        {
            "account_id": "acme",
            "actor_id": "adam",
            "changes": [{"type": "upgrade_plan", "product": "support", "plan": "enterprise"}],
        },
    )
    step(
        "An agent may not request (R1)",
        "request.submit",
        {"account_id": "acme", "actor_id": "ada", "changes": CHANGES},
    )
    step(
        "A self-service account may not request (R5)",
        "request.submit",
        {"account_id": "solo", "actor_id": "sam", "changes": CHANGES},
    )
    request_id = submitted["result"]["request"]["request_id"]
    step(
        "The owner approves: the change is applied, the requester told (R12, R17)",
        "request.decide",
        {
            "request_id": request_id,
            "actor_id": "olivia",
            "decision": "approve",
            "comment": "Welcome aboard, team",
        },
    )
    reply = step(
        "The request as the Requests view shows it",
        "request.get",
        {"request_id": request_id, "actor_id": "adam"},
    )
    for entry in reply["result"]["request"]["history"]:
        story.echo(
            f"   {entry['at']}  {entry['from'] or '-'} -> {entry['to']}"
            f"  by {entry['actor_id']}  ({entry['trigger']})"
        )


def run_demo(settings: Settings, echo: Echo) -> None:
    problem = unreachable(settings.amqp_url)
    if problem is not None:
        raise BrokerUnreachable(
            f"RabbitMQ is not reachable at SUBREQ_AMQP_URL ({settings.amqp_url}): "
            f"{problem}. Start one (`rabbitmq-server -detached` on Debian, or "
            "`docker compose up -d rabbitmq`) or point SUBREQ_AMQP_URL at yours."
        ) from None
    with tempfile.TemporaryDirectory(prefix="subreq-demo-") as folder:
        url = f"sqlite:///{Path(folder) / 'subreq.db'}"
        settings = settings.model_copy(update={"database_url": url})
        upgrade(Database(url))
        echo(f"database: {url} (fresh, removed at the end)")
        echo(f"broker:   {settings.amqp_url}")
        worker = Worker(settings, WorkerOptions(notify=True, sweep=True))
        worker.start()
        tap = EventTap(settings.amqp_url)
        try:
            if not worker.wait_ready(15):
                raise BrokerUnreachable("the worker could not connect to the broker in time")
            with SubreqClient(settings.amqp_url) as client:
                tell(Story(client, tap, echo))
            show_mail(worker.db, settings, echo)
        finally:
            tap.close()
            worker.stop()
            worker.join(15)
        echo("\nworker stopped cleanly; every event was published before it stopped")


def show_mail(db: Database, settings: Settings, echo: Echo, timeout: float = 15.0) -> None:
    """The emails the notifier sent for the story (R16-R18), once it has handled them all."""
    deadline = time.monotonic() + timeout
    with reading(db) as store:
        wanted = {n["notification_id"] for n in notifications_requested(store)}
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with reading(db) as store:
            found = [d for d in recent(store, limit=100) if d["notification_id"] in wanted]
        if len(found) == len(wanted) and all(d["status"] in ("sent", "failed") for d in found):
            break
        time.sleep(0.1)
    where = settings.smtp_url and parse_smtp_url(settings.smtp_url).describe()
    echo(f"\n== The emails ({f'sent to {where}' if where else f'written to {settings.mail_dir}/'})")
    for delivery in sorted(found, key=lambda d: d["created_at"]):
        to = delivery["recipient"]
        file = "" if where else f"{settings.mail_dir / (delivery['notification_id'] + '.eml')}  "
        status = "" if delivery["status"] == "sent" else f" [{delivery['status']}]"
        echo(f'   {file}to {to["name"]} <{to["email"]}>: "{delivery["subject"]}"{status}')
    if len(found) < len(wanted):
        echo(f"   ({len(wanted) - len(found)} not handled yet)")
