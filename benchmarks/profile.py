"""Sampling profiles of a running process with py-spy (a dev dependency): where its
threads spend their time, summarised for docs/benchmarks.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>[^(]+) \((?P<file>[^:]+)(?::\d+)?\)$")


class Profile:
    """``py-spy record`` attached to ``pid`` until :meth:`stop` (raw, collapsed stacks).

    Args:
        pid: the process to sample.
        path: where the collapsed stacks are written.
        rate: samples per second.
        idle: sample waiting threads too (where the main thread waits: flush, commit).
    """

    def __init__(self, pid: int, path: Path, rate: int = 100, *, idle: bool = False) -> None:
        self.path = path
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"),
                *("--threads", "--nonblocking", "--output", str(path)),
                *(["--idle"] if idle else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """Stop sampling and wait for the file (py-spy writes it on SIGINT)."""
        self.process.send_signal(2)
        self.process.wait(timeout=60)


def summary(path: Path, top: int = 12, thread: str | None = None) -> list[tuple[str, float, float]]:
    """``(function (file), self share, total share)`` of the busiest functions, over the
    samples of all threads (or of the threads whose name contains ``thread``); shares of
    those samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        first, *rest = stack.split(";")  # the first frame names the thread
        if thread is not None and thread not in first:
            continue
        frames = [_short(f) for f in rest]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if samples == 0:
        return []
    return [(name, n / samples, total[name] / samples) for name, n in own.most_common(top)]


def shares(path: Path, groups: dict[str, str], thread: str) -> dict[str, float]:
    """For each ``label: function`` of ``groups``, the share of ``thread``'s samples whose
    stack contains ``function`` (inclusive time)."""
    counts = dict.fromkeys(groups, 0)
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or thread not in stack.split(";", 1)[0]:
            continue
        samples += int(count_text)
        for label, function in groups.items():
            if f";{function} (" in stack:
                counts[label] += int(count_text)
    return {label: n / samples if samples else 0.0 for label, n in counts.items()}


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "stream_forecaster/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['function'].strip()} ({file})"
