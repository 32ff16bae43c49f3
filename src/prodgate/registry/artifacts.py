"""Artifact bytes in the store, and the local copies that loaders read.

A registered file or folder is kept twice, content addressed by the sha256 its
version records (a file's own hash, a folder's tree hash from
:func:`~prodgate.registry.fingerprint.sha256_tree`):

- in the store, in the ``artifacts`` and ``artifact_chunks`` tables that this module
  alone writes, so that a replica with nothing but the store's URL can serve;
- read-only in ``HOME/artifacts/<sha[:2]>/<sha>/<name>``, the local cache every
  loader reads from.

The store holds a stream: a file's bytes, or a folder as a tar with sorted entries
and fixed times, owners and modes (the same folder always gives the same stream). It
goes in and comes out one chunk at a time (:data:`CHUNK_SIZE`), so no side holds an
artifact whole in memory; PostgreSQL keeps the chunks as bytea, SQLite as BLOBs.

:func:`materialise` is the one way a stored version is loaded (the gateway's fleet,
``evaluate``). It returns the cached copy when its hash is still the registered one;
otherwise it fetches the store's copy into a temporary name beside the cache,
verifies its hash, and renames it into place. A half-written or altered copy never
has the cache's name, and two processes fetching at once each install a whole one.
A cached copy whose hash is wrong is replaced from the store with a warning, rather
than refused: the store's copy is the reference. A version registered before its bytes
were stored (they are only in HOME/artifacts) is stored on its first load, when its
cached copy verifies.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.exceptions import ArtifactError, StoreError
from prodgate.registry.fingerprint import sha256_path, tree_entry, tree_files
from prodgate.store.engine import LOCK_ARTIFACTS, Store, now_us
from prodgate.store.tables import artifact_chunks, artifacts

if TYPE_CHECKING:
    from prodgate.registry.versions import Version

logger = logging.getLogger("prodgate.artifacts")

#: Bytes per stored chunk: large enough that a 50 MB model is 50 statements, small
#: enough that holding one (or a few, in the driver) costs nothing.
CHUNK_SIZE = 1 << 20

FILE, FOLDER = "file", "folder"

_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class Stored:
    """An artifact's row in the store: what its stream is and how it is cut."""

    sha256: str
    name: str
    kind: str  # FILE or FOLDER
    size: int  # bytes of the stream
    stream_sha256: str  # of the stream (a folder's tar); a file's is its sha256
    chunks: int


def stored(conn: Connection, sha256: str) -> Stored | None:
    """The stored artifact *sha256*, or None if the store does not hold it."""
    row = conn.execute(sa.select(artifacts).where(artifacts.c.sha256 == sha256)).first()
    if row is None:
        return None
    m = row._mapping
    return Stored(
        sha256=m["sha256"],
        name=m["name"],
        kind=m["kind"],
        size=int(m["size"]),
        stream_sha256=m["stream_sha256"],
        chunks=int(m["chunks"]),
    )


# Putting bytes in ------------------------------------------------------------------


class _ChunkWriter:
    """A write-only file that stores what it is given as numbered chunks."""

    def __init__(self, conn: Connection, sha256: str, chunk_size: int) -> None:
        self._conn = conn
        self._sha256 = sha256
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self.hash = hashlib.sha256()
        self.size = 0
        self.chunks = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._chunk_size:
            self._emit(bytes(self._buffer[: self._chunk_size]))
            del self._buffer[: self._chunk_size]
        return len(data)

    def close(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def _emit(self, data: bytes) -> None:
        self._conn.execute(
            artifact_chunks.insert(), {"sha256": self._sha256, "seq": self.chunks, "data": data}
        )
        self.chunks += 1


class _HashingReader:
    """A file read through, hashing what is read."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.hash.update(data)
        return data


def _write_tar(root: Path, out: _ChunkWriter) -> str:
    """Write *root* as a deterministic tar to *out*; the tree hash of what was read."""
    tree = hashlib.sha256()
    with tarfile.open(fileobj=cast("IO[bytes]", out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for file in tree_files(root):
            rel = file.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.size = file.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with file.open("rb") as f:
                reader = _HashingReader(f)
                tar.addfile(info, cast("IO[bytes]", reader))
            tree.update(tree_entry(rel, reader.hash.hexdigest()))
    return tree.hexdigest()


def put(
    store: Store,
    conn: Connection,
    path: Path,
    sha256: str,
    *,
    name: str | None = None,
    chunk_size: int | None = None,
) -> bool:
    """Store the file or folder at *path*, registered as *sha256*, in *conn*'s transaction.

    Nothing is written when the store already holds *sha256*; True when this call
    stored it. The bytes are hashed as they go in, and if they are not what *sha256*
    names (the file changed since it was hashed) an :class:`ArtifactError` rolls the
    transaction back. Chunks are *chunk_size* bytes (by default :data:`CHUNK_SIZE`).
    """
    chunk_size = chunk_size or CHUNK_SIZE
    # Two processes storing the same bytes at once: the second finds the first's row.
    store.lock(conn, LOCK_ARTIFACTS)
    if stored(conn, sha256) is not None:
        return False
    writer = _ChunkWriter(conn, sha256, chunk_size)
    try:
        if path.is_dir():
            kind, got = FOLDER, _write_tar(path, writer)
        else:
            with path.open("rb") as f:
                while data := f.read(chunk_size):
                    writer.write(data)
            kind, got = FILE, writer.hash.hexdigest()
        writer.close()
    except (OSError, tarfile.TarError) as exc:
        raise ArtifactError(f"{path}: cannot be read to store it: {exc}") from None
    if got != sha256:
        raise ArtifactError(
            f"{path} changed while it was being stored (sha256 {got[:12]}..., registered "
            f"{sha256[:12]}...); register it again"
        )
    conn.execute(
        artifacts.insert(),
        {
            "sha256": sha256,
            "name": name or path.name,
            "kind": kind,
            "size": writer.size,
            "stream_sha256": writer.hash.hexdigest(),
            "chunks": writer.chunks,
            "created_at_us": now_us(),
        },
    )
    return True


# Getting bytes out -----------------------------------------------------------------


class _ChunkReader:
    """A read-only file over a stored artifact's stream, fetched a chunk at a time."""

    def __init__(self, conn: Connection, artifact: Stored, label: str) -> None:
        self._conn = conn
        self._artifact = artifact
        self._label = label
        self._seq = 0
        self._buffer = b""
        self._pos = 0
        self.hash = hashlib.sha256()

    def _next(self) -> bytes:
        if self._seq >= self._artifact.chunks:
            return b""
        data = self._conn.execute(
            sa.select(artifact_chunks.c.data).where(
                artifact_chunks.c.sha256 == self._artifact.sha256,
                artifact_chunks.c.seq == self._seq,
            )
        ).scalar()
        if data is None:
            raise ArtifactError(
                f"{self._label}: chunk {self._seq} of its stored artifact is missing; "
                "register it again"
            )
        self._seq += 1
        data = bytes(data)
        self.hash.update(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while data := self._next():
            yield data

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if self._pos >= len(self._buffer):
                self._buffer, self._pos = self._next(), 0
                if not self._buffer:
                    break
            end = len(self._buffer) if size < 0 else self._pos + size - len(out)
            piece = self._buffer[self._pos : end]
            out += piece
            self._pos += len(piece)
        return bytes(out)

    def drain(self) -> None:
        """Fetch what the reader of the stream left, so that :attr:`hash` covers it all."""
        for _ in self.chunks():
            pass


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _matches(path: Path, sha256: str) -> bool:
    return path.exists() and sha256_path(path)[0] == sha256


def _make_read_only(path: Path) -> None:
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        file.chmod(_READ_ONLY)


def _temp(dest: Path, folder: bool) -> Path:
    """A fresh name beside *dest* (no other process or thread gets the same one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def _install(tmp: Path, dest: Path, sha256: str) -> bool:
    """Rename the verified copy *tmp* to *dest*; False if another whole copy got there first.

    A wrong copy at *dest* is renamed aside first (one rename: nobody sees a half-removed
    folder under the cache's name) and then removed.
    """
    error: OSError | None = None
    for _ in range(3):
        try:
            if tmp.is_dir():
                os.rename(tmp, dest)  # fails onto a folder that holds anything
            else:
                os.replace(tmp, dest)  # atomic, even onto an existing file
            return True
        except OSError as exc:
            error = exc
            if _matches(dest, sha256):
                _discard(tmp)
                return False
            aside = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
            try:
                os.rename(dest, aside)
            except FileNotFoundError:
                continue
            _discard(aside)
    _discard(tmp)
    raise ArtifactError(f"cannot put a copy of the artifact at {dest}: {error}")


def cache(src: Path, dest: Path, sha256: str) -> bool:
    """Copy *src* read-only to its cache path *dest*, unless a verified copy is there.

    True when this call put the copy there (so a refused registration removes it with
    :func:`discard_copy`).
    """
    if _matches(dest, sha256):
        return False
    tmp = _temp(dest, src.is_dir())
    try:
        if src.is_dir():
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, tmp)
        _make_read_only(tmp)
    except OSError:
        _discard(tmp)
        raise
    return _install(tmp, dest, sha256)


def discard_copy(copied: Path, root: Path) -> None:
    """Remove a cached copy a refused registration made, and the folders it emptied."""
    _discard(copied)
    for folder in (copied.parent, copied.parent.parent):
        if folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _cache_path(root: Path, version: Version) -> Path:
    rel = Path(version.artifact)
    if rel.is_absolute() or ".." in rel.parts:
        raise ArtifactError(
            f"version {version.number}: its artifact path {version.artifact!r} is outside "
            "HOME/artifacts"
        )
    return root / rel


def _write_file(reader: _ChunkReader, tmp: Path) -> None:
    with tmp.open("wb") as f:
        for data in reader.chunks():
            f.write(data)


def _write_folder(reader: _ChunkReader, tmp: Path) -> None:
    # Streamed: members are extracted as their bytes arrive. The "data" filter refuses
    # absolute names, "..", links leaving the folder and device files, so even a
    # tampered stream cannot write outside the temporary folder.
    with tarfile.open(fileobj=cast("IO[bytes]", reader), mode="r|") as tar:
        tar.extractall(tmp, filter="data")
    reader.drain()


def fetch(store: Store, version: Version, artifact: Stored, dest: Path) -> None:
    """Materialise the stored *artifact* of *version* at *dest*, verified, or raise.

    The bytes go to a temporary name beside *dest*, are checked against the sha256 the
    version registered, and only then renamed to *dest*; on any failure the temporary
    copy is removed and an :class:`ArtifactError` names the version.
    """
    label = f"version {version.number}"
    if artifact.kind not in (FILE, FOLDER):
        raise ArtifactError(f"{label}: unknown kind of stored artifact {artifact.kind!r}")
    tmp = _temp(dest, folder=artifact.kind == FOLDER)
    try:
        with store.read() as conn:
            reader = _ChunkReader(conn, artifact, label)
            if artifact.kind == FOLDER:
                _write_folder(reader, tmp)
            else:
                _write_file(reader, tmp)
        if reader.hash.hexdigest() != artifact.stream_sha256:
            raise ArtifactError(
                f"{label}: its artifact in the store was changed; register it again"
            )
        got, _ = sha256_path(tmp)  # what was written, read back
        if got != version.sha256:
            raise ArtifactError(
                f"{label}: its artifact in the store does not match the registered sha256 "
                f"({got[:12]}..., registered {version.sha256[:12]}...); register it again"
            )
        _make_read_only(tmp)
        _install(tmp, dest, version.sha256)
    except (OSError, tarfile.TarError) as exc:
        _discard(tmp)
        raise ArtifactError(f"{label}: its stored artifact cannot be written out: {exc}") from None
    except BaseException:
        _discard(tmp)
        raise


def _backfill(store: Store, version: Version, local: Path) -> None:
    """Store *local* (verified) if the store lacks it: a version registered before
    artifacts were stored becomes loadable by replicas that lack the folder."""
    try:
        with store.read() as conn:
            if stored(conn, version.sha256) is not None:
                return
        with store.write() as conn:
            added = put(store, conn, local, version.sha256, name=local.name)
    except (StoreError, ArtifactError) as exc:
        logger.warning(
            "%s version %s: its artifact could not be stored from %s (%s); it loads from there",
            version.service,
            version.number,
            local,
            exc.detail,
        )
        return
    if added:
        logger.info(
            "%s version %s: its artifact was only in %s; it is now in the store too",
            version.service,
            version.number,
            local,
        )


def materialise(store: Store, version: Version) -> str:
    """Where to load *version* from, checked to be what was registered.

    A callable's reference, its module's hash checked
    (:meth:`~prodgate.registry.versions.Version.verified_location`); otherwise the
    path of the cached copy in HOME/artifacts, fetched from the store first when it is
    missing or its hash is wrong (see the module docstring). Raises
    :class:`ArtifactError` naming the version when neither copy is usable.
    """
    root = store.settings.artifacts_path
    if version.flavor == "callable":
        return version.verified_location(root)
    dest = _cache_path(root, version)
    label = f"version {version.number}"
    changed: str | None = None
    if dest.exists():
        sha, _ = sha256_path(dest)
        if sha == version.sha256:
            _backfill(store, version, dest)
            return str(dest)
        changed = f"sha256 {sha[:12]}..., registered {version.sha256[:12]}..."
    with store.read() as conn:
        artifact = stored(conn, version.sha256)
    if artifact is None:
        if changed:
            raise ArtifactError(
                f"{label}: the artifact was changed after registration ({changed}) and the "
                "store has no copy of it; register it as a new version"
            )
        raise ArtifactError(
            f"{label}'s artifact is neither in the store nor in HOME/artifacts ({dest}); "
            "register it again"
        )
    if changed:
        logger.warning(
            "%s version %s: the cached copy %s was changed (%s); fetching it again from the store",
            version.service,
            version.number,
            dest,
            changed,
        )
    fetch(store, version, artifact, dest)
    return str(dest)
