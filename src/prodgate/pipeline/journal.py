"""The local journal: audit records kept on disk while the store cannot be reached.

When a group commit fails because the store is unreachable, the recorder writes the
group to this journal instead, one JSON line per record, and fsyncs it before the
callers are answered: an acknowledged decision is then durable on this machine, and
survives a crash of the process. Once the store answers again the recorder replays
the journal into the audit log in order, a slice at a time, and empties it.

Each process writes a file of its own, ``journal-<host>-<pid>-<random>.jsonl`` in the
folder, and holds an exclusive ``flock`` on it while it lives. A process that starts
adopts the files whose lock it can take (their writer is gone), so records spooled
before a crash are replayed by the next process on this home, or by another replica
that shares the folder. Replaying skips records whose id the log already holds: a
crash between the store's commit and the journal's bookkeeping must not record one
twice. A record the store refuses for what it is (not for being unreachable) goes to
``dead-letter.jsonl`` beside the journals, so it cannot hold the others back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from prodgate.audit.record import Record

_FIELDS = {f.name for f in dataclasses.fields(Record)}

DEAD_LETTER = "dead-letter.jsonl"

#: Where replay has got to: (index of the file, byte offset in it).
Cursor = tuple[int, int]


def _dump(record: Record) -> bytes:
    return orjson.dumps(dataclasses.asdict(record), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _load(line: bytes) -> Record | None:
    """A record from one journal line; None for a torn line (a crash mid-write)."""
    if not line.endswith(b"\n"):
        return None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not _FIELDS.issuperset(data):
        return None
    return Record(**data)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """This process's journal file plus the orphaned ones it adopted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        name = f"journal-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = folder / name
        self._file: IO[bytes] | None = None
        self._adopted: list[tuple[Path, IO[bytes]]] = []
        self._cursor: Cursor = (0, 0)
        self.pending = 0  # records written here (or adopted) and not yet replayed

    def open(self) -> None:
        """Create this process's file, take its lock, and adopt orphaned journals."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab+")  # noqa: SIM115 - kept open for the process
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_folder(self.folder)  # the new file's name survives a power loss too
        self.adopt()

    def adopt(self) -> int:
        """Take over the journals whose writer is gone; how many records they hold.

        Done when the process starts, and again from time to time while nothing waits
        here (so a replica that died and stays down is replayed by one that lives).
        """
        if self.pending:  # a replay is under way: its cursor stays as it is
            return 0
        taken = {path for path, _ in self._adopted}
        for other in sorted(self.folder.glob("journal-*.jsonl")):
            if other == self.path or other in taken:
                continue
            try:
                handle = open(other, "rb+")  # noqa: SIM115 - held until replayed
            except FileNotFoundError:  # replayed and removed by another process meanwhile
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its writer is alive
                handle.close()
                continue
            self._adopted.append((other, handle))
        self._cursor = (0, 0)
        self.pending = sum(1 for _ in self._read(None))
        return self.pending

    def _handles(self) -> list[IO[bytes]]:
        handles = [h for _, h in self._adopted]
        if self._file is not None:
            handles.append(self._file)
        return handles

    def append(self, records: Sequence[Record]) -> None:
        """Write *records* and make them durable (fsync) before returning.

        A write that fails half-way is cut off again, so a later append never runs
        on from a torn line.
        """
        if self._file is None:
            raise RuntimeError("open() the journal first")
        if not records:
            return
        size = self._file.seek(0, os.SEEK_END)
        try:
            self._file.write(b"".join(_dump(r) for r in records))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self._file.truncate(size)
            raise
        self.pending += len(records)

    def _read(self, limit: int | None) -> Iterator[tuple[Record, Cursor]]:
        """Records from the cursor on, each with the cursor just after it."""
        first, offset = self._cursor
        for index, handle in enumerate(self._handles()):
            if index < first:
                continue
            handle.seek(offset if index == first else 0)
            while True:
                line = handle.readline()
                if not line:
                    break
                record = _load(line)
                if record is not None:
                    yield record, (index, handle.tell())
                    if limit is not None:
                        limit -= 1
                        if limit <= 0:
                            return

    def take(self, limit: int) -> tuple[list[Record], Cursor]:
        """Up to *limit* records waiting to be replayed, and where they end."""
        out: list[Record] = []
        end = self._cursor
        for record, after in self._read(limit):
            out.append(record)
            end = after
        return out, end

    def done(self, records: int, cursor: Cursor) -> None:
        """*records* up to *cursor* are in the store; when that was all, clear."""
        self._cursor = cursor
        self.pending = max(0, self.pending - records)
        if self.pending == 0:
            self.clear()

    def dead_letter(self, record: Record) -> None:
        """Keep *record*, which the store refuses, out of the way of the others."""
        with open(self.folder / DEAD_LETTER, "ab") as f:
            f.write(_dump(record))
            f.flush()
            os.fsync(f.fileno())

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
        self._cursor = (0, 0)
        self.pending = 0

    def close(self) -> None:
        """Release the files; an empty journal of this process is removed."""
        for _, handle in self._adopted:
            handle.close()
        self._adopted = []
        if self._file is not None:
            if self.pending == 0:
                self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
