"""Nomad Variables, locally: `DATA/variables.db` holds each variable's items sealed with
AES-256-GCM under `DATA/variables.key` (32 random bytes, root only, made on first write).

The path and namespace are the associated data, so a sealed row copied to another path does
not open. Metadata (indexes, times) stays readable: listing and change detection need no key.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NAMESPACE = "default"
MAX_ITEMS_BYTES = 64 * 1024
_PATH = re.compile(r"[a-zA-Z0-9\-_~/]{1,128}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS variables (
    namespace TEXT NOT NULL, path TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL,
    create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL,
    create_time INTEGER NOT NULL, modify_time INTEGER NOT NULL,
    PRIMARY KEY (namespace, path));
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
"""


class VariableError(ValueError):
    pass


def _aead(key: bytes) -> AESGCM:
    # imported on first use: a service whose jobs use no variables never loads cryptography
    # (~7 MB resident)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


@dataclass(frozen=True)
class Meta:
    namespace: str
    path: str
    create_index: int
    modify_index: int
    create_time: int  # nanoseconds since the epoch, as Nomad reports them
    modify_time: int


@dataclass(frozen=True)
class Variable:
    meta: Meta
    items: Mapping[str, str]


def check_path(path: str) -> None:
    """Nomad's rules (nomad/structs/variables.go)."""
    if not _PATH.fullmatch(path):
        raise VariableError(f'invalid path "{path}": use 1 to 128 letters, digits and - _ ~ /')
    parts = path.split("/")
    if parts[0] != "nomad":
        return
    if len(parts) == 1:
        raise VariableError(
            '"nomad" is a reserved top-level directory path, but you may write variables to '
            '"nomad/jobs", "nomad/job-templates", or below'
        )
    if parts[1] == "jobs" or (parts[1] == "job-templates" and len(parts) == 3):
        return
    if parts[1] == "job-templates":
        raise VariableError(
            '"nomad/job-templates" is a reserved directory path, but you may write variables '
            'at the level below it, for example, "nomad/job-templates/template-name"'
        )
    raise VariableError(
        'only paths at "nomad/jobs" or "nomad/job-templates" and below are valid paths under '
        'the top-level "nomad" directory'
    )


class VariableStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "variables.db"
        self.key_path = data_dir / "variables.key"
        self._key: bytes | None = None

    # ---- the key ----
    def _read_key(self, create: bool) -> bytes | None:
        if self._key is not None:
            return self._key
        try:
            fd = os.open(self.key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            fd = self._create_key()
        try:
            key = os.read(fd, 64)
        finally:
            os.close(fd)
        if len(key) != 32:
            raise VariableError(f"{self.key_path} is not a 32-byte key")
        self._key = key
        return key

    def _create_key(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.key_path, flags, 0o600)
        except FileExistsError:
            return os.open(self.key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, os.urandom(32))  # what AESGCM.generate_key(256) returns
            os.fsync(fd)
        finally:
            os.close(fd)
        return os.open(self.key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    # ---- the database ----
    def _connect(self, write: bool) -> sqlite3.Connection | None:
        if not write and not self.db_path.exists():
            return None
        if write:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        if write:
            os.chmod(self.db_path, 0o600)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        return conn

    def put(self, path: str, items: Mapping[str, str], now: float | None = None) -> Meta:
        check_path(path)
        if not items:
            raise VariableError("a variable needs at least one item (KEY=VALUE)")
        body = json.dumps(dict(items), sort_keys=True).encode()
        if len(body) > MAX_ITEMS_BYTES:
            raise VariableError("variables are limited to 64KiB in total size")
        key = self._read_key(create=True)
        assert key is not None
        nonce = os.urandom(12)
        sealed = _aead(key).encrypt(nonce, body, f"{NAMESPACE}/{path}".encode())
        stamp = int((time.time() if now is None else now) * 1e9)
        conn = self._connect(write=True)
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT last FROM counter WHERE id = 1").fetchone()
            index = (row[0] if row else 0) + 1
            conn.execute("INSERT OR REPLACE INTO counter (id, last) VALUES (1, ?)", (index,))
            old = conn.execute(
                "SELECT create_index, create_time FROM variables WHERE namespace = ? AND path = ?",
                (NAMESPACE, path),
            ).fetchone()
            created = old or (index, stamp)
            conn.execute(
                "INSERT OR REPLACE INTO variables VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (NAMESPACE, path, nonce, sealed, created[0], index, created[1], stamp),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return Meta(NAMESPACE, path, created[0], index, created[1], stamp)

    def purge(self, path: str) -> bool:
        conn = self._connect(write=True)
        assert conn is not None
        try:
            cur = conn.execute(
                "DELETE FROM variables WHERE namespace = ? AND path = ?", (NAMESPACE, path)
            )
            return cur.rowcount > 0
        finally:
            conn.close()

    def list(self, prefix: str = "") -> list[Meta]:
        conn = self._connect(write=False)
        if conn is None:
            return []
        try:
            rows = conn.execute(
                "SELECT namespace, path, create_index, modify_index, create_time, modify_time "
                "FROM variables WHERE namespace = ? ORDER BY path",
                (NAMESPACE,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()
        return [Meta(*r) for r in rows if r[1].startswith(prefix)]

    def versions(self) -> dict[str, int]:
        """path -> modify index: what change detection compares, without the key."""
        return {m.path: m.modify_index for m in self.list()}

    def get(self, path: str) -> Variable | None:
        conn = self._connect(write=False)
        if conn is None:
            return None
        try:
            row = conn.execute(
                "SELECT nonce, sealed, create_index, modify_index, create_time, modify_time "
                "FROM variables WHERE namespace = ? AND path = ?",
                (NAMESPACE, path),
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            conn.close()
        if row is None:
            return None
        key = self._read_key(create=False)
        if key is None:
            raise VariableError(f"{self.key_path} is missing: the variables cannot be read")
        try:
            body = _aead(key).decrypt(row[0], row[1], f"{NAMESPACE}/{path}".encode())
        except Exception as e:  # InvalidTag: a wrong key or a tampered row
            raise VariableError(f"variable {path} does not decrypt with {self.key_path}") from e
        items = json.loads(body)
        return Variable(Meta(NAMESPACE, path, *row[2:]), items)
