"""Run events through Redis Streams, so any web process can relay any worker's run.

A stream per run (not pub/sub): a client that connects after the run started still reads
every event from the beginning, and blocking waiters cannot miss the final event.
"""
