"""The README's two set-up commands are the ones CI and the workflow actually use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_pinning_cpu_torch_first():
    commands = _setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    for command in commands:
        assert command.startswith("pip install torch==2.13.0 && ")
    assert "snakemake --cores" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert _setup_commands()[1] in ci_lines
