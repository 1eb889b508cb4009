"""The summary of a py-spy profile in the benchmark report: shares per function."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profile import markdown, summarize

STACKS = """\
Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982);handle_batch (/w/workflow/service.py:210);preload (/w/workflow/batchstore.py:70) 30
Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982);handle_batch (/w/workflow/service.py:212);render (/w/workflow/notifications.py:300) 50
Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982);poll (/v/pika/select_connection.py:1240) 20
not a stack line
"""  # noqa: E501


def test_shares_on_the_stack_and_at_the_top(tmp_path: Path) -> None:
    stacks = tmp_path / "profile.txt"
    stacks.write_text(STACKS)
    summary = summarize(stacks, top=3)
    assert summary.samples == 100
    assert summary.inclusive == [
        ("handle_batch (workflow/service.py)", 80.0),
        ("render (workflow/notifications.py)", 50.0),
        ("preload (workflow/batchstore.py)", 30.0),
    ]
    assert summary.leaf[0] == ("render (workflow/notifications.py)", 50.0)
    lines = markdown("PostgreSQL batched", summary, stacks)
    assert lines[0] == "### PostgreSQL batched"
    assert "| 80.0% | `handle_batch (workflow/service.py)` | | 50.0% |" in "\n".join(lines)


def test_an_empty_profile_says_so(tmp_path: Path) -> None:
    stacks = tmp_path / "profile.txt"
    stacks.write_text("")
    assert summarize(stacks).samples == 0
