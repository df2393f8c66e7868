"""Checks of an MLflow tracking store held in a database, made before MLflow opens it.

MLflow creates its schema in whatever database it is given and retries an unreachable one for
minutes. These checks read without writing: a SQLite file through the ``sqlite3`` module in
read-only mode, a database server through one SQLAlchemy connection with a short timeout.
A reader (a report, an export) needs MLflow's tables to be there already; a sweep may create
them in a new database, but not beside another program's tables.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from trainables.errors import UserError, first_line

#: Tables every MLflow tracking database has (MLflow's schema migrations create them).
MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs"})
#: How long a database server has to accept a connection (seconds).
CONNECT_TIMEOUT_S = 5
#: The package that provides each database driver module SQLAlchemy imports.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                   "MySQLdb": "mysqlclient (or use mysql+pymysql:// with pymysql)", "pymysql": "pymysql",
                   "mysql": "mysql-connector-python", "pyodbc": "pyodbc", "pymssql": "pymssql"}
#: The connect argument that bounds the connection time, per SQLAlchemy driver name.
TIMEOUT_ARGS = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pymysql": "connect_timeout",
                "mysqldb": "connect_timeout", "mysqlconnector": "connection_timeout", "pg8000": "timeout",
                "pyodbc": "timeout", "pymssql": "login_timeout"}


def _unusable(field: str, uri: str, reason: str) -> UserError:
    from trainables.credentials import redact_uri, secrets_in_uri

    shown = redact_uri(uri) if secrets_in_uri(uri, user_is_secret=uri.startswith(("http://", "https://"))) else uri
    return UserError(field, f"cannot use the MLflow tracking store {shown} ({reason})")


def sqlite_tables(field: str, uri: str, path: Path) -> set[str] | None:
    """The tables of the existing SQLite file ``path``, read without writing; None for an empty
    (0-byte) file. A file that is not a SQLite database is refused."""
    import sqlite3

    if path.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                                                timeout=30)) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError as e:  # locked by a writer for long, unreadable
        raise _unusable(field, uri, f"cannot read {path}: {e}") from None
    except sqlite3.DatabaseError as e:
        raise _unusable(field, uri, f"{path} is not a SQLite database: {e}") from None


def check_sqlite_store(field: str, uri: str, path: Path, *, reader: bool) -> None:
    """Refuse an existing SQLite file MLflow should not open: one that is not a database, or
    one that holds another program's tables (MLflow would add its own among them). A reader
    also refuses a file without MLflow's tables (MLflow would create them); a sweep accepts an
    empty file or database, where it creates them."""
    tables = sqlite_tables(field, uri, path)
    if tables and MLFLOW_TABLES <= tables:
        return
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise _unusable(field, uri, f"{path} is another program's SQLite database (tables {shown}), "
                                    "not an MLflow store; give a new file or an MLflow store")
    if reader:
        raise _unusable(field, uri, f"{path} is empty, not an MLflow store; give the store a sweep wrote to")


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def check_database_server(field: str, uri: str, *, reader: bool) -> None:
    """Refuse a database tracking store (``postgresql://``, ``mysql://``, ``mssql://``) whose
    driver is not installed or that does not accept a connection within
    :data:`CONNECT_TIMEOUT_S` seconds; a reader also refuses one without MLflow's tables."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        url = sqlalchemy.engine.make_url(uri)
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except ImportError as e:
        module = (getattr(e, "name", None) or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module or "its driver")
        raise _unusable(field, uri, f"the database driver {module or '?'} is not installed; "
                                    f"pip install {package}") from None
    except Exception as e:  # noqa: BLE001  (a malformed URL, an unknown dialect)
        raise _unusable(field, uri, first_line(e)) from None
    key = TIMEOUT_ARGS.get(dialect.driver)
    args = {key: CONNECT_TIMEOUT_S} if key and key not in url.query else {}
    engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names()) if reader else MLFLOW_TABLES
    except Exception as e:  # noqa: BLE001  (refused, timed out, authentication, no such database)
        raise _unusable(field, uri, first_line(getattr(e, "orig", None) or e)) from None
    finally:
        engine.dispose()
    if not MLFLOW_TABLES <= tables:
        raise _unusable(field, uri, "the database has no MLflow tables; give the store a sweep wrote to")


def is_database_server(uri: str) -> bool:
    return uri.split("://", 1)[0].split("+")[0] in ("postgresql", "mysql", "mssql") and "://" in uri


def check_file_store_readable(field: str, uri: str) -> None:
    """A file store (a folder, ``uri`` without a scheme or ``file:``) is opened by MLflow 3 only
    with ``MLFLOW_ALLOW_FILE_STORE=true`` (without it MLflow raises at once): say so, and how to
    read it, in one line. Any other URI passes."""
    folder = uri.removeprefix("file://").removeprefix("file:")
    if ("://" in uri and not uri.startswith("file:")) or not os.path.isdir(folder):
        return
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise UserError(field, f"{os.path.abspath(folder)} is a folder (MLflow's file store), which MLflow opens "
                               "only with MLFLOW_ALLOW_FILE_STORE=true set: set it to read this store, or move "
                               "the store to SQLite with `mlflow migrate-filestore` and give sqlite:///PATH.db")


def reader_client(uri: str, field: str = "--tracking-uri") -> Any:
    """An MlflowClient for an existing store a command only reads; never creates one or
    writes to it, and a store it cannot use is one line (``field``) within seconds."""
    from mlflow import MlflowClient

    from trainables.mlflow_names import sqlite_path

    if not uri.strip():
        raise UserError(field, "is empty; give sqlite:///PATH.db, a database URL or an http(s):// tracking server")
    if (db := sqlite_path(uri)) is not None:
        if not db.is_file():
            raise UserError(field, f"no MLflow database at {db.resolve()}")
        check_sqlite_store(field, uri, db, reader=True)
    elif is_database_server(uri):
        check_database_server(field, uri, reader=True)
    with _quiet("mlflow.utils.databricks_utils", "mlflow.store.db.utils", "alembic"):
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001  (a server that is down, a scheme MLflow has no store for)
            raise _unusable(field, uri, first_line(e)) from None
    return client
