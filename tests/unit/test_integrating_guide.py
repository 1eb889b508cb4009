"""The integrator's guide shows the examples' own code: every excerpt of
``docs/integrating.md`` is a marked region of a file the suite runs, and every marked
region is shown, so neither can drift from the other."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "integrating.md"
EXAMPLES = [
    ROOT / "docs" / "examples" / "python_client.py",
    ROOT / "docs" / "examples" / "node_client.mjs",
]
EXCERPT = re.compile(r"<!-- example: (\S+)#(\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
REGION = re.compile(r"^[ \t]*(?:#|//) guide: (\S+)\n(.*?)^[ \t]*(?:#|//) /guide$", re.DOTALL | re.M)


def regions(path: Path) -> dict[str, str]:
    """The marked regions of an example (``# guide: name`` ... ``# /guide``), dedented."""
    found = {}
    for name, code in REGION.findall(path.read_text()):
        assert name not in found, f"{path}: region {name} twice"
        found[name] = textwrap.dedent(code).strip("\n") + "\n"
    return found


def test_every_excerpt_of_the_guide_is_the_examples_code() -> None:
    shown = EXCERPT.findall(GUIDE.read_text())
    assert len(shown) >= 8
    for path, name, code in shown:
        source = regions(ROOT / path)
        assert name in source, f"{path} has no region {name}"
        assert code == source[name], (
            f"the guide's {path}#{name} differs; it should be:\n{source[name]}"
        )


def test_every_region_of_the_examples_is_shown() -> None:
    shown = {(path, name) for path, name, _ in EXCERPT.findall(GUIDE.read_text())}
    for example in EXAMPLES:
        for name in regions(example):
            assert (str(example.relative_to(ROOT)), name) in shown, f"{example}#{name} unused"


def test_the_readme_links_the_guide() -> None:
    talking = (ROOT / "README.md").read_text().split("## Talking to it", 1)[1].split("\n## ", 1)[0]
    assert "docs/integrating.md" in talking
