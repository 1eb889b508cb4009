"""The benchmark harness runs end to end at a tiny size.

No timing is asserted: only that every run completed, every command got the expected
reply and was stored once, and the outbox was empty when the clock stopped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench, report

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_benchmark_runs_at_smoke_size(amqp_url: str, postgres_url: str, tmp_path: Path) -> None:
    args = bench.parse_args(
        [
            "--smoke",
            "--databases",
            "postgresql,sqlite",
            "--modes",
            "e2e,batched,traced,single,ceiling",
            # The session's vhost is used as is (no vhost creation rights needed); fresh
            # databases are created on the server of the session's database.
            "--amqp-url",
            amqp_url,
            "--reuse-vhost",
            "--postgres-url",
            postgres_url,
            "--output",
            str(tmp_path / "latest.md"),
        ]
    )
    messages: list[str] = []

    result = bench.run(args, log=messages.append)

    modes = ["e2e", "batched", "traced", "single", "ceiling"]
    assert [(r.database, r.mode) for r in result.runs] == [
        (database, mode) for database in ("postgresql", "sqlite") for mode in modes
    ]
    for run in result.runs:
        context = f"{run.database}/{run.mode}: " + "\n".join(messages[-20:])
        assert run.failure is None, context
        assert run.commands == args.commands == 200, context
        assert run.replies == run.commands, context
        assert run.errors == 0, run.error_samples
        assert run.backlog == 0, context
        assert run.processed == run.sent == args.warmup + args.sequential + args.commands
        assert run.events > 0, context
        assert not run.problems, run.problems
        if run.mode == "traced":
            assert run.spans_exported, context  # the traced worker really exported spans
        if run.mode == "e2e":
            # Every notification the commands asked for reached the sink, once.
            assert run.emails > 0, context
            assert run.emails_total == run.emails_expected > 0, context
        if run.database == "postgresql":
            assert run.wal_bytes > 0, context
            assert 0 < run.flushing_commits <= run.writing_commits, context
            assert run.db_scope in ("database", "server"), context
        assert run.worker_cpu_s > 0, context
        # PostgreSQL runs have --workers processes (two by default, as deployed), every one
        # of them consuming; SQLite runs one.
        assert run.workers == (2 if run.database == "postgresql" else 1), context
    assert result.ok

    report.write(result, Path(args.output))
    written = Path(args.output).read_text()
    assert "| PostgreSQL | batched | 2 | 200 |" in written
    assert "| SQLite | ceiling | 1 | 200 |" in written
    assert "| PostgreSQL | e2e | 2 | 200 |" in written
    assert "end to end / command-only" in written
    assert Path(args.output).with_suffix(".json").exists()
