"""One-line summaries of the domain rules, keyed by the ids that denials, tests and docs cite."""

from __future__ import annotations

RULES: dict[str, str] = {
    "R1": "Only an admin without billing permission may submit a request; "
    "owners and billing admins are told to update the subscription directly.",
    "R2": "Only the owner or a billing admin of the same account may approve or reject.",
    "R3": "Roles come from the service's member directory, never from a message; "
    "only members of an account see its requests.",
    "R4": "The requester, the owner or a billing admin may cancel a pending request.",
    "R5": "Requests are possible only on a sales-assisted account that allows "
    "subscription changes (not self-service, not managed).",
    "R6": "A pending request is voided when its account stops being eligible, "
    "and the people involved are told.",
    "R7": "A request may add seats, add an addable catalog product, or upgrade a plan.",
    "R8": "Removals, downgrades, billing cycle, payment and invoice changes and "
    "account cancellation are out of scope.",
    "R9": "Every item is validated against the catalog and the current subscription, "
    "with one detail per problem.",
    "R10": "The summary lists current and proposed values and the cost per billing period, "
    "with a total.",
    "R11": "An account has at most one pending request, across concurrent workers.",
    "R12": "Approving applies the change in the same transaction, re-validated against "
    "the subscription at that moment.",
    "R13": "Only a pending request can be decided or cancelled; final states never change.",
    "R14": "A pending request expires after a configurable time (default 30 days), "
    "with one reminder to the deciders (default after 3 days).",
    "R15": "Every transition is recorded in the request's history and every refusal "
    "in the audit log; both are append-only.",
    "R16": "On submit, the account owner (and, when configured, the billing admins) "
    "is emailed the requester, changes and cost.",
    "R17": "The requester is told of approve, reject, expire and void; on cancel the "
    "other side is told; emails follow the recipient's locale.",
    "R18": "No email is sent twice for the same event, whatever is redelivered.",
    "R19": "A rejection must carry a comment, which the requester is told.",
    "R20": "The reminder may be repeated at a configured interval, up to a configured "
    "number of reminders in all.",
    "R21": "A configured time before a request expires, its requester and deciders are "
    "told once that it will expire, and when.",
    "R22": "A request still pending a configured time after submit is sent, once, to every "
    "decider of the account who was not emailed about it yet.",
    "R23": "A request whose total exceeds the account's approval.second_above needs the "
    "approvals of two different deciders; the first is recorded and told to the others.",
}
