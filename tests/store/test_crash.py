"""Kill -9 a process that is committing: everything it had acknowledged is there after
reopening, and the store opens and takes writes as usual (no corruption).

``fsync`` promises more (power loss) than a process kill can test; ``os`` promises exactly
this, so both run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.store import LmdbStore, WriteBatch

from .helpers import message

CHILD = Path(__file__).with_name("crash_child.py")
ACKS_BEFORE_KILL = 300


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_acknowledged_commits_survive_sigkill(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), durability],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(acked) < ACKS_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line, f"child ended early with {proc.wait()}"
            mid, seq = line.split()
            acked[mid] = int(seq)
        os.kill(proc.pid, signal.SIGKILL)  # mid-flight: more commits are queued and running
    finally:
        proc.kill()
        proc.wait()
    # Lines written after our last read were acknowledged too: read them all.
    assert proc.stdout is not None
    for line in proc.stdout:
        mid, seq = line.split()
        acked[mid] = int(seq)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = LmdbStore.open(path)
    store.start()
    try:
        ids = [f"{mid}.{part}" for mid in acked for part in range(3)]
        found = store.get_messages(ids)
        assert len(found) == len(ids), "an acknowledged message is missing"
        assert store.outbox_depth() >= len(ids)
        last = store.last_event_seq()
        assert last >= max(acked.values())
        events = {e.seq: e.message_id for e in store.events_after(0, last + 10)}
        assert all(events[seq] == mid for mid, seq in acked.items())
        assert sorted(events) == list(range(1, last + 1))  # no gaps, no torn groups
        batch = WriteBatch()
        batch.put_message(message("after-crash"))
        store.commit_sync(batch, timeout=30)
        assert store.get_message("after-crash") is not None
    finally:
        store.close()
