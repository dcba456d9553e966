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


def test_the_first_screen_shows_results_and_how_to_regenerate_one_figure():
    """A newcomer sees Table 1 and an image grid (committed under docs/) and the command that
    rebuilds one figure before scrolling."""
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:45])
    for picture in ("docs/table1.png", "docs/fig2.png"):
        assert f"]({picture})" in first_screen, picture
        assert (ROOT / picture).stat().st_size > 10_000, picture
    assert "snakemake --cores 2 figures/table1.pdf" in first_screen
    assert "python workflow/scripts/docs_images.py" in (ROOT / "README.md").read_text()


def test_docs_images_copies_built_figures_and_refuses_missing_ones(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    script = [sys.executable, str(ROOT / "workflow/scripts/docs_images.py"), "--figures", str(tmp_path / "figures"),
              "--out", str(tmp_path / "docs"), "--width", "100"]
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (300, 150), (200, 10, 10)).save(tmp_path / "figures/table1.png")
    missing = subprocess.run(script, capture_output=True, text=True)
    assert missing.returncode == 1 and "fig2.png" in missing.stderr and "snakemake --cores 2" in missing.stderr
    assert not (tmp_path / "docs").exists()
    Image.new("RGB", (80, 40), (10, 10, 200)).save(tmp_path / "figures/fig2.png")
    made = subprocess.run(script, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    with Image.open(tmp_path / "docs/table1.png") as table, Image.open(tmp_path / "docs/fig2.png") as grid:
        assert table.size == (100, 50) and grid.size == (80, 40)  # only wider images shrink
        assert table.getpixel((50, 25)) == (200, 10, 10)
