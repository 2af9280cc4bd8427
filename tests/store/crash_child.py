"""Child process of test_crash.py: commits from several threads and prints every
acknowledged message id, until the parent kills it with SIGKILL.

usage: python crash_child.py PATH DURABILITY
"""

from __future__ import annotations

import sys
import threading

from gateway.store import Event, LmdbStore, MessageRecord, WriteBatch

T0 = 1_790_000_000.0
THREADS = 4
PER_THREAD = 20_000  # bounded: the parent kills us long before this


def main() -> None:
    path, durability = sys.argv[1], sys.argv[2]
    store = LmdbStore.open(path, durability=durability)  # type: ignore[arg-type]
    store.start()
    out_lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(PER_THREAD):
            mid = f"t{t}-{i}"
            batch = WriteBatch()
            for part in range(3):  # a few records per batch, acknowledged together
                rec = MessageRecord(
                    id=f"{mid}.{part}", created_at=T0, to="+15550000000", text="x" * 200,
                    kind="campaign",
                )
                batch.put_message(rec)
                batch.outbox_add(T0 + i, rec.id)
            batch.append_event(Event(seq=0, at=T0, type="status", message_id=mid))
            seqs = store.commit_sync(batch).event_seqs
            with out_lock:
                sys.stdout.write(f"{mid} {seqs[0]}\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    main()
