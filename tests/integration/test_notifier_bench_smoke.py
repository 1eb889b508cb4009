"""The notifier benchmark runs end to end at a tiny size: both sinks, every email sent and
recorded before the clock stops. No timing is asserted."""

from __future__ import annotations

import pytest

from benchmarks import notifier_bench

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_notifier_benchmark_runs_at_smoke_size(amqp_url: str, postgres_url: str) -> None:
    args = notifier_bench.parse_args(
        [
            "--emails",
            "60",
            "--slow-smtp",
            "20",
            "--connections",
            "4",
            "--postgres-url",
            postgres_url,
            "--amqp-url",
            amqp_url,
            "--timeout",
            "60",
        ]
    )
    results = notifier_bench.run(args)
    assert [r.case for r in results] == ["local sink", "sink answering after 20 ms"]
    for result in results:
        assert (result.emails, result.connections, result.received) == (60, 4, 60)
        assert result.seconds > 0
        assert result.rate > 0
        assert result.notifier_cpu > 0
        assert result.sink_cpu > 0
    # Four connections, each mail 20 ms at the slow sink: it cannot beat 200 mails/s.
    assert results[1].rate < 4 / 0.020
    table = notifier_bench.table(results)
    assert table.count("\n") == 3
    assert "| local sink | 60 | 4 |" in table


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        notifier_bench.parse_args(["--emails", "0"])
    assert "--emails and --connections must be positive" in capsys.readouterr().err
