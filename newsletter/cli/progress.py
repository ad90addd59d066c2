"""A progress bar for sends: done of total, messages per second and time left, on stderr."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from newsletter.states import DeliveryStatus


class ProgressBar:
    """A rich progress bar with rate and ETA on stderr; a ``sending.Progress``."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[what]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.0f} msg/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.already = 0
        self.started = time.monotonic()
        self.last = 0.0

    def start(self, counts: Mapping[DeliveryStatus, int]) -> None:
        total = sum(counts.values())
        self.already = (
            total - counts.get(DeliveryStatus.PENDING, 0) - counts.get(DeliveryStatus.SENDING, 0)
        )
        self.task = self.progress.add_task("send", total=total, rate=0.0, what="sending")
        self.started = time.monotonic()
        self.progress.start()
        self.progress.update(self.task, completed=self.already)

    def update(self, done: int, sent: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        rate = sent / (now - self.started) if now > self.started else 0.0
        self.progress.update(self.task, completed=self.already + done, rate=rate, what="sending")

    def waiting(self, until: datetime) -> None:
        """The send stays for retries (or another sender's lease) due at ``until``."""
        when = until.astimezone().strftime("%H:%M:%S")
        self.progress.update(self.task, what=f"waiting for retries due {when}")

    def stop(self) -> None:
        self.progress.stop()
