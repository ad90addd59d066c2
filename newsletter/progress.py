"""A progress bar for sends: done of total, messages per second and time left, on stderr."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from newsletter.states import DeliveryStatus


class ProgressBar:
    """A rich progress bar with rate and ETA on stderr."""

    def __init__(self, counts: Mapping[DeliveryStatus, int]) -> None:

        self.total = sum(counts.values())
        self.already = (
            self.total
            - counts.get(DeliveryStatus.PENDING, 0)
            - counts.get(DeliveryStatus.SENDING, 0)
        )
        self.progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.0f} msg/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task("send", total=self.total, rate=0.0)
        self.started = time.monotonic()
        self.last = 0.0

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        self.progress.update(self.task, completed=self.already)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, done: int, sent: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        rate = sent / (now - self.started) if now > self.started else 0.0
        self.progress.update(self.task, completed=self.already + done, rate=rate)
