"""Weekly automated sends: ``python scheduler.py [--once] [--send-stale] [--config PATH]``.

The checkout's entry point; installed, the same program is ``newsletter-scheduler``. The code
is :mod:`newsletter.scheduler` (settings, wiring, logging) and :mod:`newsletter.autosend`.
See docs/scheduler.md.
"""

from newsletter.scheduler import run

if __name__ == "__main__":
    run()
