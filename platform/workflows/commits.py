"""How durable each of a run's writes must be before the worker goes on.

Every commit of PostgreSQL waits for its WAL to reach the disk (about 1.5 ms here, more on
network storage), and a one-step run writes six times. Writes that only record progress (the
claim, node records before an LLM call) commit without waiting: PostgreSQL flushes the WAL
in order, so the next waited-for commit (the LLM step's result, the run's end) makes them
durable too. A database crash in between loses at most that progress; the run then looks
queued or running again and is resumed or re-run, which a crash in the middle of the
provider call would cause anyway. What was paid for and what a client is told are always
committed durably.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def progress_commit():
    """A transaction whose commit does not wait for the disk (see the module docstring)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
