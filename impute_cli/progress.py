"""progress: a tqdm bar when stderr is a terminal, plain log lines otherwise.

A bar redrawn with carriage returns is what a person at a terminal wants, and what a log file
of a batch job does not (hundreds of kilobytes of redraws). Off a terminal, `LogBar` writes a
line with the count, rate and time left when a tenth of the work is done, at most every
MIN_GAP seconds, and at least every MAX_GAP seconds; a job shorter than QUIET_START seconds
writes nothing."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

QUIET_START, MIN_GAP, MAX_GAP = 10.0, 10.0, 60.0


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LogBar:
    """The part of tqdm's interface the project uses (update, set_postfix, close, n, total, a
    context manager), as occasional plain lines on stderr."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False) -> None:
        self.total, self.desc, self.unit, self.n, self.disable = total, desc, unit, initial, disable
        self.start = self.last = time.perf_counter()
        self.first, self.last_tenth, self.postfix, self.spoke = initial, 10 * initial // max(total, 1), "", False

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.disable:
            return
        now = time.perf_counter()
        tenth = 10 * self.n // max(self.total, 1)
        due = (tenth > self.last_tenth and now - self.last >= MIN_GAP) or now - self.last >= MAX_GAP
        if now - self.start >= QUIET_START and due:
            self._line(now)
            self.last, self.last_tenth = now, tenth

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, now: float) -> None:
        done = self.n - self.first
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - self.n) / rate if rate > 0 else float("inf")
        eta = _clock(left) if left != float("inf") else "?"
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}, {rate:.3g} {self.unit}/s, "
              f"{_clock(now - self.start)} so far, about {eta} left{extra}", file=sys.stderr, flush=True)
        self.spoke = True

    def close(self) -> None:
        if not self.disable and self.spoke:
            print(f"{self.desc}: {self.n}/{self.total} {self.unit} in {_clock(time.perf_counter() - self.start)}",
                  file=sys.stderr, flush=True)
        self.disable = True

    def __enter__(self) -> "LogBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 leave: bool = True) -> Any:
    """A tqdm bar on a terminal, a LogBar otherwise; nothing shown when not `enabled`."""
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                    dynamic_ncols=True, leave=leave)
    return LogBar(total, desc, unit, initial, disable=not enabled)
