"""After the storm: everything the contract promised, checked against the model, the
database, the broker and the SMTP server, and summed up as figures.

``lost`` counts effects that should be there and are not; ``doubled`` counts effects
that are there more often than the commands asked for (a second request from one
submit, a second history entry, a second audit row for one refused command, a seat
too many). Both must be 0.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import orjson

from consumers.notifier import IN_HAND_PER_CONNECTION
from tests.chaos.faults import PendingWatch
from tests.chaos.publisher import ResilientClient
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from tests.chaos.workload import Workload
from workflow.contract.names import COMMANDS_QUEUE, DEAD_QUEUE, NOTIFICATIONS_DEAD_QUEUE
from workflow.settings import Settings

SHOW = 5  # examples shown per problem

HELD_PER_NOTIFIER = IN_HAND_PER_CONNECTION * Settings.model_fields["smtp_connections"].default
"""The claims a notifier holds at most, hence strands at most when it is killed."""


@dataclass
class Verdict:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, what: str, examples: Any = None) -> None:
        if examples is not None:
            listed = sorted(examples, key=str)[:SHOW] if not isinstance(examples, str) else examples
            what = f"{what}: {listed}"
        self.problems.append(what)


def _deliveries_settled(stack: Stack) -> bool:
    """The outbox is published and every notification has a delivery that is sent and
    announced (a killed worker's claims are taken over once their lease ends, within
    seconds; its unannounced mails are announced by another a lease later)."""
    unpublished = stack.scalar(
        "SELECT count(*) FROM outbox WHERE id > "
        "(SELECT coalesce(max(upto_id), 0) FROM outbox_published)"
    )
    requested = stack.scalar("SELECT count(*) FROM outbox WHERE type = 'notification.requested'")
    rows = stack.rows("SELECT status, due_at FROM notification_deliveries")
    done = all(status == "sent" and due_at is None for status, due_at in rows)
    return not unpublished and len(rows) == requested and done


def settle(stack: Stack, timeout: float) -> float:
    """Wait (bounded) until the outbox is published and every email is sent, twice in a
    row a second apart; returns the seconds it took. Never raises: the checks say what is
    missing."""
    start = time.monotonic()
    streak = 0
    while time.monotonic() - start < timeout:
        try:
            settled = _deliveries_settled(stack)
        except Exception:  # the database may still be coming back
            settled = False
        streak = streak + 1 if settled else 0
        if streak >= 2:
            break
        time.sleep(1.0 if settled else 0.25)
    return time.monotonic() - start


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def verify(
    scenario: str,
    stack: Stack,
    load: Workload,
    client: ResilientClient,
    sink: MailSink,
    watch: PendingWatch,
    *,
    faults: dict[str, int],
    kill_times: list[float],
) -> Verdict:
    verdict = Verdict(scenario)
    figures = verdict.figures
    figures["commands"] = len(load.commands)
    figures["accounts"] = len(load.accounts)
    figures.update(faults)
    figures["duplicates"] = load.duplicates
    figures["late_duplicates"] = load.late_duplicates
    figures["republished"] = client.republished
    figures["harness_reconnects"] = client.reconnects

    # --- replies ------------------------------------------------------------------------
    missing = load.missing_replies()
    inconsistent = load.inconsistent_replies()
    figures["replies"] = sum(len(b) for b in load.replies.values())
    figures["replies_missing"] = len(missing)
    figures["mismatches"] = len(load.mismatches)
    if missing:
        verdict.problem(f"{len(missing)} published commands got no reply", missing)
    if inconsistent:
        verdict.problem(f"{len(inconsistent)} commands answered differently", inconsistent)
    if load.stalled:
        verdict.problem(
            f"replies stopped coming for 30 s: the load stopped with "
            f"{sum(a.budget for a in load.accounts.values())} commands never sent"
        )
    if load.mismatches:
        verdict.problem(f"{len(load.mismatches)} replies differ from the model", load.mismatches)

    lost = doubled = 0

    # --- idempotency records ----------------------------------------------------------
    processed = {r[0] for r in stack.rows("SELECT key FROM processed_commands")}
    expected_keys = load.expected_keys()
    no_record = expected_keys - processed
    strange = processed - expected_keys
    lost += len(no_record)
    if no_record:
        verdict.problem(f"{len(no_record)} commands have no idempotency record", no_record)
    if strange:
        verdict.problem(f"{len(strange)} idempotency records of unknown commands", strange)

    # --- audit (R15) ----------------------------------------------------------------------
    audits = stack.rows("SELECT idempotency_key, code FROM audit_log")
    per_key = Counter(key for key, _ in audits)
    refusals = load.expected_refusals()
    extra_audit = sum(n - 1 for n in per_key.values() if n > 1) + sum(
        n for key, n in per_key.items() if key not in refusals
    )
    missing_audit = [key for key in refusals if key not in per_key]
    wrong_code = [key for key, code in audits if key in refusals and refusals[key] != code]
    doubled += extra_audit
    lost += len(missing_audit)
    figures["refusals_audited"] = len(audits)
    if extra_audit:
        verdict.problem(f"{extra_audit} audit rows beyond one per refused command", per_key)
    if missing_audit:
        verdict.problem(f"{len(missing_audit)} refusals not audited", missing_audit)
    if wrong_code:
        verdict.problem("audited with another code than answered", wrong_code)

    # --- requests, history, subscriptions -----------------------------------------------
    model_states = {
        rid: (acct.account_id, state)
        for acct in load.accounts.values()
        for rid, state in acct.states.items()
    }
    stored = {
        r[0]: (r[1], r[2]) for r in stack.rows("SELECT request_id, account_id, state FROM requests")
    }
    extra_requests = set(stored) - set(model_states)
    missing_requests = set(model_states) - set(stored)
    doubled += len(extra_requests)
    lost += len(missing_requests)
    figures["requests"] = len(stored)
    if extra_requests:
        verdict.problem(f"{len(extra_requests)} requests nobody was told about", extra_requests)
    if missing_requests:
        verdict.problem(f"{len(missing_requests)} acknowledged requests missing", missing_requests)
    wrong_state = [
        (rid, stored[rid], model)
        for rid, model in model_states.items()
        if rid in stored and stored[rid] != model
    ]
    if wrong_state:
        verdict.problem(f"{len(wrong_state)} requests in another state than replied", wrong_state)

    history: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for rid, frm, to, trigger in stack.rows(
        "SELECT request_id, from_state, to_state, trigger FROM request_transitions ORDER BY id"
    ):
        history[rid].append((frm, to, trigger))
    broken = []
    for rid, (_, state) in stored.items():
        steps = history.get(rid, [])
        chained = bool(steps) and steps[0][:2] == (None, "pending")
        chained = chained and all(a[1] == b[0] for a, b in pairwise(steps))
        transitions = 1 if state == "pending" else 2
        if not chained or steps[-1][1] != state or len(steps) != transitions:
            broken.append((rid, state, steps))
        doubled += max(0, len(steps) - transitions)
    if broken:
        verdict.problem(f"{len(broken)} histories inconsistent with their state", broken)

    seats = dict(
        stack.rows("SELECT account_id, seats FROM subscription_products WHERE product = 'support'")
    )
    names = dict(stack.rows("SELECT account_id, name FROM accounts"))
    locales = dict(
        stack.rows("SELECT account_id, locale FROM members WHERE user_id = account_id || '-admin'")
    )
    wrong_seats, wrong_names = [], []
    for acct in load.accounts.values():
        got = seats.get(acct.account_id, 0)
        if got != acct.seats:
            wrong_seats.append((acct.account_id, got, acct.seats))
            doubled += max(0, got - acct.seats)
            lost += max(0, acct.seats - got)
        if acct.renames and names.get(acct.account_id) != acct.name:
            wrong_names.append((acct.account_id, names.get(acct.account_id), acct.name))
        if locales.get(acct.account_id) != acct.admin_locale:
            wrong_names.append((acct.account_id, locales.get(acct.account_id), acct.admin_locale))
    if wrong_seats:
        verdict.problem(
            "subscriptions differ from the approvals (account, seats, model)", wrong_seats
        )
    if wrong_names:
        verdict.problem("upserts not applied as replied (account, stored, model)", wrong_names)

    # --- R11 --------------------------------------------------------------------------
    final_pending = stack.scalar(
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM requests "
        "WHERE state = 'pending' GROUP BY account_id) AS per_account"
    )
    figures["max_pending_per_account"] = max(watch.max_pending, int(final_pending))
    figures["pending_samples"] = watch.samples
    if figures["max_pending_per_account"] > 1:
        verdict.problem("an account had more than one pending request", watch.worst)
    if watch.samples < 5:
        verdict.problem(f"R11 was sampled only {watch.samples} times")

    # --- outbox and events --------------------------------------------------------------
    outbox = stack.rows(
        "SELECT id, event_id, type, request_id, "
        "id <= (SELECT coalesce(max(upto_id), 0) FROM outbox_published), "
        "CASE WHEN type LIKE 'notification.%' THEN payload END FROM outbox ORDER BY id"
    )
    figures["events_outbox"] = len(outbox)
    figures["events_published"] = sum(1 for row in outbox if row[4])
    if figures["events_published"] != len(outbox):
        verdict.problem(f"{len(outbox) - figures['events_published']} outbox events unpublished")
    by_request: dict[str, Counter[str]] = defaultdict(Counter)
    for _, _, type_, rid, _, _ in outbox:
        if rid is not None and type_ != "notification.sent":
            by_request[rid][type_] += 1
    wrong_events = []
    for acct in load.accounts.values():
        for rid, state in acct.states.items():
            want = Counter({"request.submitted": 1, "notification.requested": 1})
            if state != "pending":
                want[f"request.{state}"] += 1
                want["notification.requested"] += 1
            if state == "approved":
                want["subscription.changed"] += 1
            got = by_request.get(rid, Counter())
            if got != want:
                wrong_events.append((rid, dict(got - want), dict(want - got)))
                doubled += sum((got - want).values())
                lost += sum((want - got).values())
    if wrong_events:
        verdict.problem("outbox events differ from the transitions (extra, missing)", wrong_events)

    events = client.drain_events()
    seen_ids = [str(e.properties.message_id) for e in events]
    outbox_ids = {row[1] for row in outbox}
    figures["events_seen"] = len(set(seen_ids))
    figures["event_duplicates"] = len(seen_ids) - len(set(seen_ids))
    gaps = outbox_ids - set(seen_ids)
    foreign = set(seen_ids) - outbox_ids
    figures["events_missing"] = len(gaps)
    if gaps:
        verdict.problem(f"{len(gaps)} outbox events never reached subreq.events", gaps)
    if foreign:
        verdict.problem(f"{len(foreign)} events not in the outbox", foreign)
    mislabelled = [
        e.properties.message_id
        for e in events
        if orjson.loads(e.body).get("event_id") != e.properties.message_id
        or e.routing_key != e.properties.type
    ]
    if mislabelled:
        verdict.problem("events whose message_id/type differ from their body/key", mislabelled)
    position = {row[1]: row[0] for row in outbox}
    request_of = {row[1]: row[3] for row in outbox}
    first_seen: dict[str, list[int]] = defaultdict(list)
    noticed: set[str] = set()
    for event_id in seen_ids:
        if event_id in noticed or event_id not in position:
            continue
        noticed.add(event_id)
        rid = request_of[event_id]
        if rid is not None:
            first_seen[rid].append(position[event_id])
    reordered = [rid for rid, ids in first_seen.items() if ids != sorted(ids)]
    if reordered:
        verdict.problem(f"{len(reordered)} requests whose events arrived out of order", reordered)

    # --- emails (R16-R18) -------------------------------------------------------------
    requested_ids = {
        orjson.loads(payload)["data"]["notification_id"]
        for _, _, type_, _, _, payload in outbox
        if type_ == "notification.requested"
    }
    sent_events = Counter(
        orjson.loads(payload)["data"]["notification_id"]
        for _, _, type_, _, _, payload in outbox
        if type_ == "notification.sent"
    )
    deliveries = {
        r[0]: (r[1], r[2], r[3])
        for r in stack.rows(
            "SELECT notification_id, status, claimed_at, attempts FROM notification_deliveries"
        )
    }
    sent = {nid for nid, (status, _, _) in deliveries.items() if status == "sent"}
    other = {nid: d[0] for nid, d in deliveries.items() if d[0] != "sent"}
    accepted = sink.accepted()
    received = Counter(a.notification_id for a in accepted)
    message_ids: dict[str, set[str]] = defaultdict(set)
    for mail in accepted:
        message_ids[mail.notification_id].add(mail.message_id)
    twice = {nid for nid, n in received.items() if n > 1}
    figures["emails_requested"] = len(requested_ids)
    figures["emails_sent"] = len(sent)
    figures["emails_received"] = len(accepted)
    figures["email_duplicates"] = sum(received[nid] - 1 for nid in twice)
    figures["emails_retried"] = sum(1 for _, _, attempts in deliveries.values() if attempts > 1)
    if set(deliveries) != requested_ids:
        verdict.problem(
            "notifications without a delivery record", sorted(requested_ids - set(deliveries))
        )
    if other:
        verdict.problem("deliveries not sent (a claim never taken over?)", other)
    renamed = {nid for nid, ids in message_ids.items() if len(ids) > 1}
    if renamed:
        verdict.problem("one notification mailed under several Message-IDs", renamed)
    if twice:
        _check_duplicates(verdict, twice, received, deliveries, kill_times)
    unsent = sent - set(received)
    if unsent:
        verdict.problem("deliveries recorded 'sent' that the SMTP server never got", unsent)
    unknown_mail = set(received) - requested_ids
    if unknown_mail:
        verdict.problem("emails nobody asked for", unknown_mail)
    if set(sent_events) != sent or any(n > 1 for n in sent_events.values()):
        verdict.problem(
            "notification.sent events do not match the deliveries",
            sorted(set(sent_events) ^ sent) or [k for k, n in sent_events.items() if n > 1],
        )
    first_accepted: dict[str, float] = {}
    for mail in sorted(accepted, key=lambda a: a.at):
        first_accepted.setdefault(mail.notification_id, mail.at)
    read_after = [
        1000 * (_epoch(sent_at) - first_accepted[nid])
        for nid, sent_at in stack.rows(
            "SELECT notification_id, sent_at FROM notification_deliveries WHERE status = 'sent'"
        )
        if received[nid] == 1 and sent_at is not None
    ]  # the server's acceptance to the worker's reading of its 250 (one clock, one host)
    figures["accepted_to_read_p50_ms"] = round(_percentile(read_after, 50), 1)
    figures["accepted_to_read_p99_ms"] = round(_percentile(read_after, 99), 1)
    if kill_times:
        delays = [
            _epoch(claimed_at) - max(k for k in kill_times if k <= _epoch(claimed_at))
            for _, claimed_at, attempts in deliveries.values()
            if attempts > 1 and claimed_at is not None and _epoch(claimed_at) >= min(kill_times)
        ]
        figures["kills_per_duplicate_email"] = (
            round(len(kill_times) / figures["email_duplicates"], 1)
            if figures["email_duplicates"]
            else None
        )
        figures["takeover_max_seconds"] = round(max(delays, default=0.0), 1)
        # Where the kill behind each duplicate landed: before the server accepted the
        # first copy (it was still answering an end of data written before the kill) or
        # after it (the worker had not written its record yet).
        nearest = {nid: _nearest(kill_times, first_accepted[nid]) for nid in twice}
        figures["duplicates_kill_before_accept"] = sum(
            1 for nid in twice if nearest[nid] <= first_accepted[nid]
        )
        figures["duplicates_kill_after_accept"] = (
            len(twice) - figures["duplicates_kill_before_accept"]
        )

    # --- the broker ---------------------------------------------------------------------
    dead = client.queue_state(DEAD_QUEUE)[0]
    dead_mail = client.queue_state(NOTIFICATIONS_DEAD_QUEUE)[0]
    left = client.queue_state(COMMANDS_QUEUE)[0]
    figures["dead_letters"] = dead + dead_mail
    if dead or dead_mail:
        letters = client.get_all(DEAD_QUEUE) + client.get_all(NOTIFICATIONS_DEAD_QUEUE)
        reasons = [(lt.properties.headers or {}).get("x-subreq-error") for lt in letters]
        verdict.problem(f"{dead + dead_mail} messages dead-lettered", reasons)
    if left:
        verdict.problem(f"{left} commands left in subreq.commands")

    figures["lost"] = lost
    figures["doubled"] = doubled
    figures["latency_p50_ms"] = round(1000 * _percentile(load.latencies, 50), 1)
    figures["latency_p99_ms"] = round(1000 * _percentile(load.latencies, 99), 1)
    figures["latency_max_ms"] = round(1000 * max(load.latencies, default=0.0), 1)
    return verdict


def _check_duplicates(
    verdict: Verdict,
    twice: set[str],
    received: Counter[str],
    deliveries: dict[str, tuple[str, datetime, int]],
    kill_times: list[float],
) -> None:
    """A mail arrives twice only when a worker was killed between the server's 250 and
    the commit recording it: then another notifier took the claim over (a second
    attempt) and sent it once more, and no kill leaves more than one notifier holds."""
    if not kill_times:
        verdict.problem("emails sent twice without any worker being killed", twice)
        return
    unexplained = [
        f"{nid} (received {received[nid]} times, attempts {deliveries[nid][2]})"
        for nid in twice
        if received[nid] != 2 or deliveries[nid][2] < 2
    ]
    if unexplained:
        verdict.problem("emails sent twice not by a takeover after a kill", unexplained)
    if len(twice) > len(kill_times) * HELD_PER_NOTIFIER:
        verdict.problem(f"{len(twice)} emails sent twice after {len(kill_times)} kills", twice)


def _nearest(times: list[float], at: float) -> float:
    """The one of ``times`` closest to ``at``."""
    return min(times, key=lambda moment: abs(moment - at))


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()
