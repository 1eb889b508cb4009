"""What each command and event is for, in one sentence (the AsyncAPI summaries)."""

from __future__ import annotations

from workflow.contract import names as n

COMMAND_SUMMARIES = {
    n.ACCOUNT_UPSERT: "Create or update an account (and replace its subscription, and its "
    "two-person approval threshold, when given).",
    n.MEMBER_UPSERT: "Create or update a member of an account; roles come only from here (R3).",
    n.MEMBER_REMOVE: "Remove a member from an account.",
    n.REQUEST_PREVIEW: "Validate changes and price them, without any state change.",
    n.REQUEST_SUBMIT: "Create a pending subscription change request (R1, R5, R7-R11).",
    n.REQUEST_DECIDE: "Approve (and apply) or reject a pending request (R2, R12, R13, R19); "
    "above the account's threshold the first approval is one of two (R23).",
    n.REQUEST_CANCEL: "Cancel a pending request (R4, R13).",
    n.REQUEST_GET: "Read one request (members of its account only).",
    n.REQUEST_LIST: "Read an account's requests, newest first.",
    n.CATALOG_GET: "Read the catalog: products, plans in rank order and per-seat prices.",
}

EVENT_SUMMARIES = {
    n.REQUEST_SUBMITTED: "A request was submitted and is pending.",
    n.REQUEST_APPROVED: "A request was approved; its change is applied.",
    n.REQUEST_REJECTED: "A request was rejected, with the decider's comment.",
    n.REQUEST_CANCELLED: "A pending request was cancelled.",
    n.REQUEST_EXPIRED: "A pending request expired without a decision (R14).",
    n.REQUEST_VOIDED: "A pending request was voided: its account stopped being eligible (R6).",
    n.REQUEST_APPROVAL_RECORDED: "The first of two approvals of a request (R23); it stays "
    "pending until another decider approves it.",
    n.SUBSCRIPTION_CHANGED: "An approval changed the account's subscription.",
    n.NOTIFICATION_REQUESTED: "Someone must be told something: subject and text included.",
    n.NOTIFICATION_SENT: "The built-in email notifier delivered a notification.",
}
