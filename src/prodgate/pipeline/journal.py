"""The local journal: audit records kept on disk while the store cannot take them.

When a group commit fails because the store is unreachable, the recorder writes the
group to this journal instead, one JSON line per record, and fsyncs it before the
callers are answered: an acknowledged decision is then durable on this machine, and
survives a crash of the process. Once the store answers again the recorder replays
the journal into the audit log, in order, and empties it.

Each process writes its own file, ``journal-<host>-<pid>.jsonl`` in the folder, and
holds an exclusive ``flock`` on it while it lives. A process that starts adopts the
files whose lock it can take (their writer is gone), so records spooled before a
crash are replayed by the next process on this home, or by another replica that
shares the folder. Replaying skips records whose id the log already holds: a crash
between the store's commit and the journal's truncation must not record one twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from prodgate.audit.record import Record

_FIELDS = {f.name for f in dataclasses.fields(Record)}


def _dump(record: Record) -> bytes:
    return orjson.dumps(dataclasses.asdict(record), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _load(line: bytes) -> Record | None:
    """A record from one journal line; None for a torn last line (a crash mid-write)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not _FIELDS.issuperset(data):
        return None
    return Record(**data)


class Journal:
    """This process's journal file plus the orphaned ones it adopted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"journal-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._file: IO[bytes] | None = None
        self._adopted: list[tuple[Path, IO[bytes]]] = []
        self.pending = 0  # records written here (or adopted) and not yet replayed

    def open(self) -> None:
        """Create this process's file, take its lock, and adopt orphaned journals."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab+")  # noqa: SIM115 - kept open for the process
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for other in sorted(self.folder.glob("journal-*.jsonl")):
            if other == self.path:
                continue
            handle = open(other, "rb+")  # noqa: SIM115 - held until replayed
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its writer is alive
                handle.close()
                continue
            self._adopted.append((other, handle))
        self.pending = sum(1 for _ in self.records())

    def append(self, records: Sequence[Record]) -> None:
        """Write *records* and make them durable (fsync) before returning."""
        assert self._file is not None, "open() the journal first"
        self._file.write(b"".join(_dump(r) for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.pending += len(records)

    def records(self) -> Iterator[Record]:
        """Everything waiting to be replayed: adopted files first, then this one's."""
        handles = [h for _, h in self._adopted]
        if self._file is not None:
            handles.append(self._file)
        for handle in handles:
            handle.seek(0)
            for line in handle:
                record = _load(line)
                if record is not None:
                    yield record
        if self._file is not None:
            self._file.seek(0, os.SEEK_END)

    def clear(self) -> None:
        """Everything was replayed: remove adopted files and empty this one."""
        for path, handle in self._adopted:
            path.unlink(missing_ok=True)
            handle.close()
        self._adopted = []
        if self._file is not None:
            self._file.truncate(0)
            self._file.flush()
            os.fsync(self._file.fileno())
        self.pending = 0

    def close(self) -> None:
        """Release the files; an empty journal of this process is removed."""
        for _, handle in self._adopted:
            handle.close()
        self._adopted = []
        if self._file is not None:
            empty = self.pending == 0
            if empty:
                self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
