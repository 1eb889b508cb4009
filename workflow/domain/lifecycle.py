"""The request lifecycle: one shared ``transitions`` machine, guards that call the policies.

A single machine serves every request (``MACHINE.events[t].trigger(model)``):
building a ``Machine`` per message costs more than twice as much, and the
machine holds no per-request state. The database transaction is the rollback,
since the library has none; cross-process rules (R11) live in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from transitions import EventData, Machine, State

from policies import roles
from policies.approvals import approvals_needed, completes, not_approved_before
from policies.changes import validate_changes
from policies.decision import ALLOW, Decision, ErrorCode
from policies.eligibility import is_eligible
from policies.facts import Account, Actor, CatalogFacts, Change, Subscription, Threshold
from policies.lifecycle import is_pending, no_other_pending
from workflow.contract.names import FINAL_STATES, STATES

NEW = "new"  # before submit; never stored
APPROVE = "approve"
"""The trigger of every approval, the first of two included (R23)."""


@dataclass
class HistoryStep:
    from_state: str | None
    to_state: str
    trigger: str
    actor_id: str | None
    at: datetime
    reason: str | None


@dataclass
class Request:
    """The aggregate the machine moves; ``steps`` collects transitions not yet stored."""

    request_id: str
    account_id: str
    requester_id: str
    state: str = NEW
    steps: list[HistoryStep] = field(default_factory=list)
    refusal: Decision = ALLOW


@dataclass(frozen=True)
class Facts:
    """Everything a guard may look at, gathered by the handler before it fires."""

    at: datetime
    actor: Actor | None = None
    actor_id: str | None = None
    account: Account | None = None
    pending_request_id: str | None = None
    changes: Sequence[Change] = ()
    subscription: Subscription | None = None
    catalog: CatalogFacts | None = None
    reason: str | None = None
    approvers: tuple[str, ...] = ()
    """Who approved the request so far (R23), oldest first."""
    total: Decimal = Decimal(0)
    """The request's total per billing period, in ``total_currency`` (R23)."""
    total_currency: str | None = None
    threshold: Threshold | None = None
    """The account's ``approval.second_above`` as it is now (R23)."""


def _submission(f: Facts, request: Request) -> Decision:
    assert f.actor
    assert f.account
    assert f.subscription
    assert f.catalog
    return Decision.combine(
        [
            roles.may_request(f.actor),
            is_eligible(f.account),
            no_other_pending(f.pending_request_id),
            validate_changes(f.changes, f.subscription, f.catalog),
        ]
    )


def _approval(f: Facts, request: Request) -> Decision:
    """R2, R23 (nobody approves twice), then R12: valid against the subscription as it is
    now; a first approval of two checks the same, so nobody approves what cannot apply."""
    decision = roles.may_decide(f.actor, request.account_id)
    if not decision:
        return decision
    decision = not_approved_before(_approver(f), f.approvers)
    if not decision:
        return decision
    assert f.subscription
    assert f.catalog
    return validate_changes(f.changes, f.subscription, f.catalog)  # R12: as things are now


def _approver(f: Facts) -> str:
    return f.actor.user_id if f.actor else (f.actor_id or "")


def _approvals_complete(f: Facts) -> bool:
    """R23: this approval makes the request approved (one decider, or the second of two)."""
    needed = approvals_needed(f.total, f.total_currency, f.threshold)
    return completes(_approver(f), f.approvers, needed)


def _rejection(f: Facts, request: Request) -> Decision:
    return roles.may_decide(f.actor, request.account_id)


def _cancellation(f: Facts, request: Request) -> Decision:
    return roles.may_cancel(f.actor, request.account_id, request.requester_id)


def _voiding(f: Facts, request: Request) -> Decision:
    """R6: only an account that lost its eligibility voids its pending request."""
    assert f.account
    if is_eligible(f.account):
        return Decision.deny("R6", ErrorCode.INVALID_STATE, "the account is still eligible")
    return ALLOW


def _always(f: Facts, request: Request) -> Decision:
    return ALLOW


def _when(
    predicate: Callable[[Facts], bool], *, expected: bool, label: str | None = None
) -> Callable[[EventData], bool]:
    """A condition that picks between transitions of one trigger without refusing anything:
    the guard after it (which explains a refusal) runs only on the transition it picked."""

    def condition(event: EventData) -> bool:
        return predicate(event.kwargs["facts"]) is expected

    name = predicate.__name__.lstrip("_")
    condition.__name__ = name if expected else f"not_{name}"
    condition.label = label  # type: ignore[attr-defined]
    return condition


def _guard(policy: Callable[[Facts, Request], Decision]) -> Callable[[EventData], bool]:
    def guard(event: EventData) -> bool:
        request = cast(Request, event.model)
        request.refusal = policy(event.kwargs["facts"], request)
        return request.refusal.allowed

    guard.__name__ = policy.__name__.lstrip("_")
    return guard


def _record(event: EventData) -> None:
    facts: Facts = event.kwargs["facts"]
    request = cast(Request, event.model)
    transition = event.transition
    assert transition is not None
    assert transition.dest is not None
    request.steps.append(
        HistoryStep(
            from_state=None if transition.source == NEW else transition.source,
            to_state=transition.dest,
            trigger=event.event.name,
            actor_id=facts.actor.user_id if facts.actor else facts.actor_id,
            at=facts.at,
            reason=facts.reason,
        )
    )


TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "submit", "source": NEW, "dest": "pending", "conditions": _guard(_submission)},
    {
        "trigger": APPROVE,
        "source": "pending",
        "dest": "approved",
        "conditions": [_when(_approvals_complete, expected=True), _guard(_approval)],
    },
    {
        # R23: the first approval of a request that needs two stays pending, recorded.
        "trigger": APPROVE,
        "source": "pending",
        "dest": "pending",
        "conditions": [
            _when(_approvals_complete, expected=False, label="(first of two, R23)"),
            _guard(_approval),
        ],
    },
    {
        "trigger": "reject",
        "source": "pending",
        "dest": "rejected",
        "conditions": _guard(_rejection),
    },
    {
        "trigger": "cancel",
        "source": "pending",
        "dest": "cancelled",
        "conditions": _guard(_cancellation),
    },
    {"trigger": "expire", "source": "pending", "dest": "expired", "conditions": _guard(_always)},
    {"trigger": "void", "source": "pending", "dest": "voided", "conditions": _guard(_voiding)},
]


def build_machine(machine_class: type[Machine] = Machine, **extra: Any) -> Machine:
    states = [State(NEW)] + [State(s, final=s in FINAL_STATES) for s in STATES]
    return machine_class(
        model=None,
        states=states,
        transitions=TRANSITIONS,
        initial=NEW,
        auto_transitions=False,
        send_event=True,
        after_state_change=_record,
        **extra,
    )


MACHINE = build_machine()


def fire(request: Request, trigger: str, facts: Facts) -> Decision:
    """Run ``trigger`` on ``request``; the decision explains a refusal (R13 when the
    machine has no such transition from the current state)."""
    if trigger not in MACHINE.get_triggers(request.state):
        return is_pending(request.state, request.request_id)
    request.refusal = ALLOW
    if MACHINE.events[trigger].trigger(request, facts=facts):
        return ALLOW
    return request.refusal


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram, read from the machine's own definition."""
    lines = ["stateDiagram-v2"]
    for name, event in MACHINE.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                start = "[*]" if source == NEW else source
                labels = [
                    label
                    for condition in transition.conditions
                    if (label := getattr(condition.func, "label", None))
                ]
                text = " ".join([name, *labels])
                lines.append(f"    {start} --> {transition.dest}: {text}")
    lines.extend(f"    {state} --> [*]" for state in STATES if MACHINE.get_state(state).final)
    return "\n".join(lines) + "\n"
