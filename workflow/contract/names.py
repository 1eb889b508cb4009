"""Every name of the wire contract, spelled once: exchanges, queues, headers, routing
keys, states and event types. Modules on both sides of the broker import them from here.
"""

from __future__ import annotations

# --- exchanges and queues ------------------------------------------------------------------

COMMANDS_EXCHANGE = "subreq.commands"
EVENTS_EXCHANGE = "subreq.events"
COMMANDS_QUEUE = "subreq.commands"
DEAD_QUEUE = "subreq.commands.dead"
DEAD_EXCHANGE = "subreq.commands.dlx"
"""Where the broker itself sends commands delivered more than ``DELIVERY_LIMIT`` times."""

RETIRED_NOTIFICATIONS_QUEUE = "subreq.notifications"
"""The queue that fed ``notification.requested`` events to the email notifier before it read
its delivery records from the database; deleted at start, so nothing fills it."""
NOTIFICATIONS_DEAD_QUEUE = "subreq.notifications.dead"
"""Copies of the notifications the notifier gave up, with the reason in ``x-subreq-error``."""
NOTIFICATIONS_DEAD_EXCHANGE = "subreq.notifications.dlx"

REPLY_TO = "amq.rabbitmq.reply-to"
"""RabbitMQ's direct reply-to pseudo-queue, which clients use to receive replies."""

DELIVERY_LIMIT = 20
"""Broker-side backstop (crash loops); the consumers dead-letter with a reason sooner."""

# --- headers -------------------------------------------------------------------------------

ERROR_HEADER = "x-subreq-error"
"""Why a message is in a dead-letter queue."""
ROUTING_KEY_HEADER = "x-subreq-routing-key"
"""The routing key a dead-lettered command was published with."""
REPLAYS_HEADER = "x-subreq-replays"
"""How often ``subreq dlq replay`` has republished a dead letter."""
DROPPED_HEADERS_HEADER = "x-subreq-dropped-headers"
"""Set when a dead letter's original headers could not be encoded again."""
DELIVERY_COUNT_HEADER = "x-delivery-count"
"""Quorum queues count redeliveries in this header (set by the broker)."""

REPLY_SUFFIX = ".reply"
"""A reply's ``type`` property is the command's routing key with this suffix."""

# --- commands ------------------------------------------------------------------------------

ACCOUNT_UPSERT = "account.upsert"
MEMBER_UPSERT = "member.upsert"
MEMBER_REMOVE = "member.remove"
REQUEST_PREVIEW = "request.preview"
REQUEST_SUBMIT = "request.submit"
REQUEST_DECIDE = "request.decide"
REQUEST_CANCEL = "request.cancel"
REQUEST_GET = "request.get"
REQUEST_LIST = "request.list"
CATALOG_GET = "catalog.get"

COMMAND_NAMES = (
    ACCOUNT_UPSERT,
    MEMBER_UPSERT,
    MEMBER_REMOVE,
    REQUEST_PREVIEW,
    REQUEST_SUBMIT,
    REQUEST_DECIDE,
    REQUEST_CANCEL,
    REQUEST_GET,
    REQUEST_LIST,
    CATALOG_GET,
)

# --- request states ------------------------------------------------------------------------

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
CANCELLED = "cancelled"
EXPIRED = "expired"
VOIDED = "voided"

STATES = (PENDING, APPROVED, REJECTED, CANCELLED, EXPIRED, VOIDED)
FINAL_STATES = frozenset(STATES[1:])

# --- events --------------------------------------------------------------------------------

REQUEST_SUBMITTED = "request.submitted"
REQUEST_APPROVED = "request.approved"
REQUEST_REJECTED = "request.rejected"
REQUEST_CANCELLED = "request.cancelled"
REQUEST_EXPIRED = "request.expired"
REQUEST_VOIDED = "request.voided"
REQUEST_APPROVAL_RECORDED = "request.approval_recorded"
"""R23: the first of two approvals; the request stays pending."""
SUBSCRIPTION_CHANGED = "subscription.changed"
NOTIFICATION_REQUESTED = "notification.requested"
NOTIFICATION_SENT = "notification.sent"

EVENT_OF_STATE = {
    PENDING: REQUEST_SUBMITTED,
    APPROVED: REQUEST_APPROVED,
    REJECTED: REQUEST_REJECTED,
    CANCELLED: REQUEST_CANCELLED,
    EXPIRED: REQUEST_EXPIRED,
    VOIDED: REQUEST_VOIDED,
}
"""The event each transition emits, named after what happened (contract: Events)."""

EVENT_TYPES = (
    *EVENT_OF_STATE.values(),
    REQUEST_APPROVAL_RECORDED,
    SUBSCRIPTION_CHANGED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_SENT,
)

# --- channels: how a command reached the service (history and audit say it) ---------------

CHANNEL_AMQP = "amqp"
CHANNEL_WEB = "web"
CHANNEL_EMAIL_LINK = "email_link"

CHANNELS = (CHANNEL_AMQP, CHANNEL_WEB, CHANNEL_EMAIL_LINK)
"""Contract: "history entries and audit rows say through which channel it came"."""
