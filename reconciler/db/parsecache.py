"""Rows of the parse cache (spec/parsecache.py says what is in them), in plain SQL."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from reconciler.db.engine import Pool, among


class ParseRows:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def get_parses(self, keys: Sequence[str]) -> Mapping[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        with self.pool.connection() as raw:
            for i in range(0, len(keys), 500):  # SQLite bounds the parameters of one statement
                where, args = among(keys[i : i + 500])
                for k, value, check in raw.execute(
                    f"SELECT key, value, checksum FROM parse_cache WHERE key{where}", args
                ):
                    if isinstance(value, str) and isinstance(check, str):
                        out[k] = (value, check)
        return out

    def put_parses(
        self, rows: Sequence[tuple[str, str, str]], keep: Collection[str] | None
    ) -> None:
        with self.pool.connection() as raw:
            raw.execute("BEGIN IMMEDIATE")
            try:
                raw.executemany(
                    "INSERT OR REPLACE INTO parse_cache (key, value, checksum) VALUES (?, ?, ?)",
                    rows,
                )
                if keep is not None:
                    raw.execute("CREATE TEMP TABLE IF NOT EXISTS parse_keep (key TEXT PRIMARY KEY)")
                    raw.execute("DELETE FROM parse_keep")
                    raw.executemany(
                        "INSERT OR IGNORE INTO parse_keep VALUES (?)", ((k,) for k in keep)
                    )
                    raw.execute(
                        "DELETE FROM parse_cache WHERE key NOT IN (SELECT key FROM parse_keep)"
                    )
                    raw.execute("DELETE FROM parse_keep")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
