"""README's quick start has exactly two commands, and CI runs the test one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_two_commands_and_ci_runs_the_test_command():
    cmds = quickstart_commands()
    assert len(cmds) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert cmds[1] in [ln.strip() for ln in ci]
    assert (ROOT / cmds[0].split()[-1]).is_file()
