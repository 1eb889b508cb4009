"""``benchmarks.bench --repeat``: each run's median round is reported, with every round's
figure, and a round whose figures cannot be trusted is never hidden behind a good one."""

from __future__ import annotations

from benchmarks.bench import median_run
from benchmarks.report import BenchReport, RunResult, now, render


def result(throughput: float, failure: str | None = None) -> RunResult:
    return RunResult(
        "postgresql",
        "batched",
        commands=100,
        throughput=throughput,
        replies=100,
        backlog=0,
        processed=100,
        sent=100,
        failure=failure,
    )


def test_the_median_round_is_reported_with_every_round() -> None:
    rounds = [result(1300), result(1100), result(1200)]
    chosen = median_run(rounds)
    assert chosen.throughput == 1200
    assert chosen.rounds == [1300, 1100, 1200]
    two = median_run([result(900), result(1000)])
    assert two.throughput == 900  # the lower middle: never the flattering one
    assert median_run([result(5)]).rounds == []


def test_a_failed_round_is_the_one_reported() -> None:
    chosen = median_run([result(1300), result(10, failure="worker died"), result(1200)])
    assert chosen.failure == "worker died"
    assert chosen.problems


def test_the_report_lists_every_round() -> None:
    chosen = median_run([result(1300), result(1100), result(1200)])
    text = _rendered(chosen)
    assert "median of 3 rounds" in text
    assert "PostgreSQL batched 1,300, 1,100, 1,200" in text


def _rendered(*runs: RunResult) -> str:
    report = BenchReport(
        started=now(),
        settings={
            "commands": 100,
            "accounts": 10,
            "in_flight": 5,
            "warmup": 0,
            "sequential": 0,
            "batch": 100,
            "prefetch": 500,
            "single_prefetch": 50,
        },
        machine={},
        versions={},
        runs=list(runs),
        host_busy_before_pct=0.0,
    )
    return render(report)


def traced(throughput: float) -> RunResult:
    run = result(throughput)
    run.mode = "traced"
    return run


def test_the_tracing_cost_is_read_the_right_way_round() -> None:
    slower = _rendered(result(1000), traced(850))
    assert "850 commands/s: 15% below tracing off (target ≤ 10%) — **misses the target**" in slower
    faster = _rendered(result(1000), traced(1100))
    assert "1,100 commands/s: 10% above tracing off (no cost measurable)" in faster
    assert "-10%" not in faster
