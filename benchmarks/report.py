"""Writing benchmark results into their own section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_HEADER = """# Benchmarks

Each section is rewritten by the suite that produced it, with the command, the machine and
the date. Results are ratios against baselines measured in the same run: the machines are
noisy, absolute numbers move from run to run.
"""


def machine() -> str:
    """Cores and CPU model of this machine, for the record."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def write_section(name: str, command: str, body: str) -> Path:
    """Replace (or append) the section ``## name`` of docs/benchmarks.md."""
    text = DOC.read_text() if DOC.exists() else _HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {name}\n\n"
        f"Command: `{command}` · machine: {machine()} · date: {stamp}\n\n{body.strip()}\n"
    )
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.M | re.S)
    text = (
        pattern.sub(lambda _: section + "\n", text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section)
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text.rstrip() + "\n")
    return DOC
