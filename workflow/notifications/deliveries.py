"""Delivery records: at most one email per notification (R18), and the notifier's work list.

The command that asks for an email writes its delivery record (``pending``, due at once)
in its own transaction, beside the ``notification.requested`` event, which is still
published for other consumers. The record refers to the event's outbox row rather than
copying it. Notifiers never consume that event from the broker: they *claim* due records
in a committed transaction before any SMTP traffic (many at once; rows another notifier is
claiming are skipped), reading each record's event from the outbox in the same statement
(retention keeps it while the record is due), and record outcomes with the claim token,
many per transaction: ``sent`` with ``notification.sent`` in the outbox, ``retrying`` with
the time it is due again, or ``failed`` with the reason (and a dead-letter copy, the
stored event itself, see the notifier). An
outcome is recorded only while its claim still holds, so a notification is sent and
reported once however many notifiers share the database.

Email cannot be exactly-once. A claim is a short lease that its living notifier renews
while the mail is in hand: a notifier that dies holding it leaves its records ``sending``
until the lease ends, then another takes them over and sends again, with the same
``Message-ID`` so receivers can tell. Only the mails the dead process had handed over and
not yet recorded are sent twice: the window is from the server's 250 to the round trip
that records it (:func:`exchange`, which takes no account lock, so no command delays it;
see ``consumers.notifier``). Its ``notification.sent`` follows in a transaction of its own
(:func:`announce`), under the accounts' locks; a ``sent`` record stays due until then, and
another notifier announces it if its own died in between (:func:`announce_stranded`).
Claimed mails not yet handed over are sent once, late. Everything else (SMTP down, a
rejection, a template error) ends with the reason in the record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from workflow.contract.names import NOTIFICATION_REQUESTED, NOTIFICATION_SENT
from workflow.persistence.database import Database
from workflow.persistence.deliveries import Claim, Renewal
from workflow.persistence.sqlstore import SqlStore
from workflow.telemetry import within

ERROR_LIMIT = 1000
"""Characters of an error kept in the record; SMTP servers can be verbose."""


@dataclass(frozen=True)
class Notice:
    """One ``notification.requested`` event, as the notifier needs it."""

    notification_id: str
    event_id: str | None
    account_id: str
    request_id: str | None
    template: str
    locale: str
    recipient_id: str | None
    email: str
    name: str
    subject: str
    text: str
    context: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class Claimed:
    """A record this notifier holds: the notice to send, the claim token that must still
    hold when its outcome is recorded, and the attempt it is."""

    notice: Notice
    token: str
    attempt: int
    lease_until: datetime
    traceparent: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed notification, to record: ``sent`` (with its
    ``message_id``), ``retrying`` (due again at ``due_at``) or ``failed`` for good."""

    claimed: Claimed
    status: Literal["sent", "retrying", "failed"]
    at: datetime
    message_id: str = ""
    error: str = ""
    due_at: datetime | None = None
    traceparent: str | None = None
    """The context of the span that sent it, for ``notification.sent``."""
    finished: float = field(default_factory=time.monotonic, compare=False)
    """When it was known (``time.monotonic``): for a sent one, right after the server's
    250; the wait from here to the commit that records it is the email window."""


@dataclass
class Exchange:
    """One round with the database: the outcomes recorded (their claims still held), those
    whose claim was lost meanwhile, and the records newly claimed."""

    recorded: list[Outcome] = field(default_factory=list)
    lost: list[Outcome] = field(default_factory=list)
    claimed: list[Claimed] = field(default_factory=list)
    renewed: set[str] = field(default_factory=set)
    """The notification ids whose held claims now last until ``lease_until``."""
    lease_until: datetime | None = None
    committed: float = 0.0
    """When the outcomes were committed (``time.monotonic``)."""


def _event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``notification.requested`` event a record read with its event refers to; ``{}``
    if it is gone (retention keeps it while the record is due)."""
    payload = row.get("payload")
    found = orjson.loads(payload) if payload else {}
    return found if isinstance(found, dict) else {}


def notice_of(row: Mapping[str, Any]) -> Notice:
    """The notice of a record read with its event (``payload``): what the email is built
    from is the event's; without it, only what the record keeps (no context: it fails)."""
    event = _event(row)
    data = event.get("data") or {}
    recipient = data.get("recipient") or {}
    context = data.get("context")
    return Notice(
        notification_id=row["notification_id"],
        event_id=event.get("event_id"),
        account_id=event.get("account_id") or "",
        request_id=event.get("request_id"),
        template=row["template"],
        locale=data.get("locale") or "en",
        recipient_id=recipient.get("user_id"),
        email=row["recipient_email"],
        name=recipient.get("name") or "",
        subject=data.get("subject") or "",
        text="",
        context=context if isinstance(context, dict) else None,
    )


def exchange(
    db: Database,
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    want: int,
    lease: timedelta,
    renew: Sequence[tuple[str, str]] = (),
    announce_sent: bool = True,
) -> Exchange:
    """Record ``outcomes``, extend the leases of the claims ``renew`` names
    (``(notification_id, claim_token)`` each, those still in hand) to ``now + lease``, and
    claim up to ``want`` due records, taking no lock but the records' own, so nothing a
    command holds delays it; on PostgreSQL in one round trip of statements that each
    commit on their own. Once it returned, a sent mail is recorded ``sent``. An outcome
    whose claim was taken over (its lease ended) records nothing. Then (unless
    ``announce_sent`` is false: the caller does it) :func:`announce` writes the
    ``notification.sent`` of the mails recorded sent."""
    done = Exchange(lease_until=now + lease)
    claim = None
    if want > 0:
        claim = Claim(str(uuid.uuid4()), now, now + lease, want)
    renewal = Renewal(renew, now + lease) if renew else None
    with db.deliveries() as records:
        ours, done.renewed, rows = records.settle_and_claim(
            [_settled(o) for o in outcomes], claim, renewal
        )
    done.committed = time.monotonic()
    for outcome in outcomes:
        target = done.recorded if outcome.claimed.notice.notification_id in ours else done.lost
        target.append(outcome)
    if claim is not None:
        done.claimed = [
            Claimed(
                notice_of(row), claim.token, row["attempts"], claim.lease_until, row["traceparent"]
            )
            for row in rows
        ]
    if announce_sent:
        announce(db, [o for o in done.recorded if o.status == "sent"])
    return done


def announce(db: Database, sent: Sequence[Outcome]) -> set[str]:
    """The ``notification.sent`` of mails recorded sent, in one transaction under their
    accounts' locks (taken sorted, as commands take them): the event's outbox id then
    follows those of the request's events committed before it, and the relay, which
    publishes in id order, keeps the request's events in order. Each is written once,
    whoever tries (a notifier that recorded it, or one announcing for a dead one); returns
    the notification ids written here."""
    if not sent:
        return set()
    with db.store() as store:
        written = store.deliveries.announce(
            sorted({o.claimed.notice.account_id for o in sent}),
            [o.claimed.notice.notification_id for o in sent],
        )
        for outcome in sent:
            if outcome.claimed.notice.notification_id in written:
                with within(outcome.traceparent):
                    _emit_sent(store, outcome)
    return written


def announce_stranded(db: Database, sent_before: datetime, limit: int = 100) -> int:
    """Announce mails recorded sent before ``sent_before`` whose ``notification.sent`` is
    not written yet: their notifier died between the two transactions. How many."""
    with db.store(lock=False) as store:
        rows = store.deliveries.unannounced(sent_before, limit)
    sent = [
        Outcome(
            Claimed(notice_of(row), "", row["attempts"], sent_before),
            "sent",
            row["sent_at"],
            message_id=row["message_id"] or "",
        )
        for row in rows
    ]
    return len(announce(db, sent))


def _settled(outcome: Outcome) -> dict[str, Any]:
    """The record's ``SETTLED`` values for ``outcome``, with the claim they need."""
    claimed = outcome.claimed
    row: dict[str, Any] = {
        "notification_id": claimed.notice.notification_id,
        "claim_token": claimed.token,
        "status": outcome.status,
        "updated_at": outcome.at,
        "sent_at": None,
        "message_id": None,
        "last_error": outcome.error[:ERROR_LIMIT] or None,
        "due_at": outcome.due_at,
    }
    if outcome.status == "sent":  # ``due_at`` stays: due for its notification.sent
        row.update(sent_at=outcome.at, message_id=outcome.message_id, last_error=None)
    elif outcome.status == "failed":  # due for its dead-letter copy until the broker has it
        row["due_at"] = outcome.at
    return row


def _emit_sent(store: SqlStore, outcome: Outcome) -> None:
    notice = outcome.claimed.notice
    store.add_event(
        NOTIFICATION_SENT,
        outcome.at,
        notice.account_id,
        {
            "notification_id": notice.notification_id,
            "recipient": {
                "user_id": notice.recipient_id,
                "email": notice.email,
                "name": notice.name,
            },
            "template": notice.template,
            "message_id": outcome.message_id,
        },
        notice.request_id,
    )


def unreported_failures(db: Database, limit: int = 100) -> list[tuple[Notice, bytes, str]]:
    """Notifications given up whose dead-letter copy is not confirmed yet, oldest first:
    each with the event a copy holds and the reason recorded."""
    with db.store(lock=False) as store:
        rows = store.deliveries.failed_unreported(limit)
    found = []
    for row in rows:
        notice = notice_of(row)
        body = row["payload"].encode() if row["payload"] else dead_letter_of(notice)
        found.append((notice, body, str(row["last_error"] or "failed")))
    return found


def dead_letter_of(notice: Notice) -> bytes:
    """The ``notification.requested`` event a dead-letter copy holds, rebuilt from the
    notice: only for a record whose event is gone (a copy is the stored event itself)."""
    data: dict[str, Any] = {
        "notification_id": notice.notification_id,
        "template": notice.template,
        "locale": notice.locale,
        "recipient": {"user_id": notice.recipient_id, "email": notice.email, "name": notice.name},
        "subject": notice.subject,
    }
    if notice.context is not None:
        data["context"] = notice.context
    return orjson.dumps(
        {
            "event_id": notice.event_id,
            "type": NOTIFICATION_REQUESTED,
            "account_id": notice.account_id,
            "request_id": notice.request_id,
            "data": data,
        }
    )


def mark_reported(db: Database, notification_ids: Sequence[str]) -> None:
    """The broker confirmed these dead-letter copies."""
    if notification_ids:
        with db.store(lock=False) as store:
            store.deliveries.reported(notification_ids)


# --- reading, for operators ------------------------------------------------------------


def _as_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record as operators read it, what it does not keep taken from its event (``None``
    once the event is pruned)."""
    event = _event(row)
    data = event.get("data") or {}
    recipient = data.get("recipient") or {}
    created = event.get("occurred_at")
    return {
        "notification_id": row["notification_id"],
        "request_id": event.get("request_id"),
        "account_id": event.get("account_id"),
        "template": row["template"],
        "locale": data.get("locale"),
        "recipient": {
            "user_id": recipient.get("user_id"),
            "email": row["recipient_email"],
            "name": recipient.get("name"),
        },
        "subject": data.get("subject"),
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "message_id": row["message_id"],
        "created_at": datetime.fromisoformat(created) if isinstance(created, str) else None,
        "updated_at": row["updated_at"],
        "sent_at": row["sent_at"],
    }


def recent(store: SqlStore, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest deliveries and failures, most recently changed first."""
    return [_as_dict(row) for row in store.deliveries.recent(status, limit)]


def of_request(store: SqlStore, request_id: str) -> dict[str, dict[str, Any]]:
    """The delivery records of one request's notifications still in the outbox (the
    request's events name them), by notification id."""
    events = store.outbox.of_type(NOTIFICATION_REQUESTED, request_id)
    return of_notifications(
        store, [orjson.loads(e["payload"])["data"]["notification_id"] for e in events]
    )


def of_notifications(store: SqlStore, notification_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The delivery records of these notifications (those that have one), by id."""
    return {
        row["notification_id"]: _as_dict(row)
        for row in store.deliveries.of_notifications(notification_ids)
    }
