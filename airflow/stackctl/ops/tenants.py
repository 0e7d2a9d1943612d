"""Onboard a tenant from a file of interactions (`stackctl tenant add <slug> --interactions FILE
[--types view,click,purchase]`),
and the writers that put a tenant's data where the pipeline reads it: the rows and files the demo
seed (stackctl/demo/seed.py) writes for its tenants.

The file is CSV with a header row (`.csv`, `.csv.gz`) or Parquet (`.parquet`, `.pq`), one
interaction per row; header names are matched without regard to case or surrounding spaces:

    user_id    integer                                                   required
    item_id    integer                                                   required
    weight     number >= 0                      (alias: rating)          required
    timestamp  ISO-8601, or epoch seconds or ms (alias: occurred_at)     required
    type       one of the tenant's types        (alias: interaction_type) optional: every row the first type

An ISO-8601 time without an offset is UTC. An epoch number below EPOCH_MS_FROM is seconds, from
it milliseconds. The tenant's interaction types are --types (default: view, click, purchase);
data_quality_check counts any other type as invalid. Other columns are ignored. The whole file is
checked before anything is written, and every problem is reported at once (the first rows of each
kind).

What is written, where the demo seed writes its tenants:
    platform database, one transaction   tenants (active), users and items (first and last seen
                                         in the interactions; items without title or category),
                                         user_interactions (one row per file row, by time),
                                         dq_tenant_config.valid_types (the tenant's types)
    object storage                       tenants/<t>/training/interactions/part-NNNNN.parquet
                                         in workers.schema.TRAINING_SCHEMA, sorted by time
The files are written under hidden names first (the training reader takes only `*.parquet`),
swapped in just before the database commits, and swapped back if the commit fails.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stackctl.errors import StackError
from workers import storage
from workers.dq import config as dq_config
from workers.platform_db.db import transaction
from workers.schema import INTERACTION_TYPES, TRAINING_SCHEMA
from workers.tenants import SLUG_RULE, is_tenant_slug

# Epoch numbers from 1e11 are milliseconds: 1e11 ms is 1973-03-03, 1e11 s the year 5138.
EPOCH_MS_FROM = 100_000_000_000
COLUMNS = {  # the name training and the database use -> the header names accepted for it
    "user_id": ("user_id",),
    "item_id": ("item_id",),
    "weight": ("weight", "rating"),
    "occurred_at": ("timestamp", "occurred_at"),
    "interaction_type": ("type", "interaction_type"),
}
OPTIONAL = {"interaction_type"}
FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
ROWS_PER_PART = 500_000
ROWS_SHOWN = 5  # per kind of problem
_INTEGER = r"^-?[0-9]{1,18}$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


class OnboardingError(StackError):
    """The file or the tenant cannot be onboarded: one line per problem; nothing was written."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("nothing written:\n  " + "\n  ".join(problems))


# --- reading and validating ------------------------------------------------------------------

def _read(path: Path) -> pa.Table:
    kind = next((k for suffix, k in FORMATS.items() if path.name.lower().endswith(suffix)), None)
    if kind is None:
        raise OnboardingError([f"{path}: unknown format; use {', '.join(FORMATS)}"])
    if not path.is_file():
        raise OnboardingError([f"{path}: no such file"])
    if path.stat().st_size == 0:
        raise OnboardingError([f"{path}: empty file"])
    try:
        if kind == "parquet":
            return pq.read_table(path)
        # Every column as text (empty and NULL-like values as NULL), so each row's problem can be named.
        text = {alias: pa.string() for aliases in COLUMNS.values() for alias in aliases}
        return pacsv.read_csv(str(path), convert_options=pacsv.ConvertOptions(column_types=text,
                                                                          strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as exc:
        raise OnboardingError([f"{path}: not a readable {kind} file ({exc})"]) from None


def _columns(table: pa.Table, problems: list[str]) -> dict[str, tuple[str, pa.ChunkedArray]]:
    """Each column found, by the name training uses: (its name in the file, its values)."""
    by_name = {name.strip().lower(): name for name in table.column_names}
    found = {}
    for column, aliases in COLUMNS.items():
        present = [by_name[a] for a in aliases if a in by_name]
        if len(present) > 1:
            problems.append(f"columns {' and '.join(present)} both given: keep one")
        elif present:
            found[column] = (present[0], table[present[0]])
        elif column not in OPTIONAL:
            problems.append(f"missing column {aliases[0]}" + (f" (or {', '.join(aliases[1:])})" if aliases[1:] else ""))
    return found


def _report(problems: list[str], bad, raw: pa.ChunkedArray, say) -> None:
    """One line for each of the first rows where `bad` holds (rows count from 1 after the header)."""
    rows = np.flatnonzero(np.asarray(bad))
    problems += [f"row {r + 1}: {say(raw[int(r)].as_py())}" for r in rows[:ROWS_SHOWN]]
    if len(rows) > ROWS_SHOWN:
        problems.append(f"... and {len(rows) - ROWS_SHOWN} more rows like that")


def _text(raw: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The column as trimmed text, and where it is NULL or blank."""
    text = pc.utf8_trim_whitespace(pc.cast(raw, pa.string()))
    missing = pc.fill_null(pc.equal(text, ""), True).to_numpy(zero_copy_only=False)
    return text, missing


def _matches(text: pa.ChunkedArray, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


def _ids(name: str, raw, problems: list[str]) -> pa.ChunkedArray:
    text, missing = _text(raw)
    ok = _matches(text, _INTEGER)
    _report(problems, missing, raw, lambda v: f"{name} is empty")
    _report(problems, ~missing & ~ok, raw, lambda v: f"{name} {v!r} is not an integer")
    return pc.cast(pc.if_else(pa.array(ok), text, None), pa.int64())


def _weights(name: str, raw, problems: list[str]) -> pa.Array:
    text, missing = _text(raw)
    number = _matches(text, _NUMBER)
    values = pc.cast(pc.if_else(pa.array(number), text, None), pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):
        weight = values.astype(np.float32)  # NULLs are NaN here, and flagged as empty
    _report(problems, missing, raw, lambda v: f"{name} is empty")
    _report(problems, ~missing & ~number, raw, lambda v: f"{name} {v!r} is not a number")
    _report(problems, number & (values < 0), raw, lambda v: f"{name} {v!r} is negative")
    _report(problems, number & np.isinf(weight), raw, lambda v: f"{name} {v!r} is too large")
    return pa.array(weight, pa.float32())


def _timestamps(name: str, raw, now_us: int, problems: list[str]) -> pa.Array:
    import pandas as pd

    text, missing = _text(raw)
    number = _matches(text, _NUMBER)
    epoch = pc.cast(pc.if_else(pa.array(number), text, None), pa.float64()).to_numpy(zero_copy_only=False)
    epoch_us = np.where(np.abs(epoch) < EPOCH_MS_FROM, epoch * 1e6, epoch * 1e3)
    iso = pd.to_datetime(pc.if_else(pa.array(number | missing), None, text).to_pandas(),
                         format="ISO8601", utc=True, errors="coerce")
    iso_us = pa.Array.from_pandas(iso).cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
    iso_us = pc.fill_null(iso_us, 0).to_numpy(zero_copy_only=False)
    parsed = number | (~missing & iso.notna().to_numpy())
    us = np.where(number, epoch_us, iso_us.astype(np.float64))
    future = parsed & (us > now_us)
    ok = parsed & ~future
    _report(problems, missing, raw, lambda v: f"{name} is empty")
    _report(problems, ~missing & ~parsed, raw,
            lambda v: f"{name} {v!r} is not ISO-8601 or epoch seconds or milliseconds")
    _report(problems, future, raw, lambda v: f"{name} {v!r} is in the future")
    return pa.array(np.where(ok, np.round(us), 0).astype(np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _types(name: str, raw, types: tuple[str, ...], problems: list[str]) -> pa.ChunkedArray:
    text, missing = _text(raw)
    valid = pc.fill_null(pc.is_in(text, pa.array(types)), False).to_numpy(zero_copy_only=False)
    _report(problems, missing, raw,
            lambda v: f"{name} is empty (a file without a {name} column gets {types[0]!r} on every row)")
    _report(problems, ~missing & ~valid, raw, lambda v: f"{name} {v!r} is not one of {', '.join(types)}")
    return text


def type_problems(types: tuple[str, ...]) -> list[str]:
    """What is wrong with a tenant's interaction types (the rule of dq_tenant_config.valid_types)."""
    bad = [t for t in types if not dq_config.TYPE_NAME.match(t)]
    if not types:
        return ["--types is empty: give at least one interaction type"]
    return [f"interaction type {t!r} is not a lower-case letter then up to 31 of a-z, 0-9 and '_'" for t in bad] + (
        ["--types names a type twice"] if len(set(types)) < len(types) else [])


def read_interactions(path: Path, now_us: int | None = None,
                      types: tuple[str, ...] = INTERACTION_TYPES) -> tuple[pa.Table | None, list[str]]:
    """The file's interactions in TRAINING_SCHEMA, sorted by time, or None and every problem found."""
    now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
    table = _read(path)
    problems: list[str] = []
    if table.num_rows == 0:
        return None, [f"{path}: empty file (a header and no rows)"]
    found = _columns(table, problems)
    if problems:
        return None, problems
    values = {
        "user_id": _ids(*found["user_id"], problems),
        "item_id": _ids(*found["item_id"], problems),
        "interaction_type": (_types(*found["interaction_type"], types, problems)
                             if "interaction_type" in found else pa.repeat(types[0], table.num_rows)),
        "weight": _weights(*found["weight"], problems),
        "occurred_at": _timestamps(*found["occurred_at"], now_us, problems),
    }
    if problems:
        return None, problems
    result = pa.Table.from_arrays([values[f.name] for f in TRAINING_SCHEMA], schema=TRAINING_SCHEMA)
    return result.sort_by("occurred_at"), []


def catalogue(interactions: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Users (created when first seen) and items (created when first seen, updated when last seen)."""
    users = interactions.group_by("user_id").aggregate([("occurred_at", "min")]).sort_by("user_id")
    items = interactions.group_by("item_id").aggregate([("occurred_at", "min"), ("occurred_at", "max")])
    items = items.sort_by("item_id")
    return (
        pa.table({"user_id": users["user_id"], "created_at": users["occurred_at_min"]}),
        pa.table({"item_id": items["item_id"], "title": pa.nulls(items.num_rows, pa.string()),
                  "category": pa.nulls(items.num_rows, pa.string()), "created_at": items["occurred_at_min"],
                  "updated_at": items["occurred_at_max"]}),
    )


# --- writing ---------------------------------------------------------------------------------

def _copy(cur, table_name: str, tenant: str, rows: pa.Table) -> None:
    rows = rows.add_column(0, "tenant_id", pa.repeat(tenant, rows.num_rows))
    buffer = io.BytesIO()
    pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    cur.copy_expert(f"COPY {table_name} ({', '.join(rows.column_names)}) FROM STDIN WITH (FORMAT csv)", buffer)


def write_rows(conn, tenant: str, name: str, users: pa.Table, items: pa.Table, interactions: pa.Table,
               *, replace: bool, types: tuple[str, ...] = INTERACTION_TYPES, before_commit=lambda: None) -> None:
    """The tenant's rows and interaction types in one transaction; with `replace`, instead of the rows it has.

    `before_commit` runs last inside the transaction: if it fails, nothing is committed.
    """
    with transaction(conn) as cur:
        cur.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT (tenant_id) DO NOTHING",
                    (tenant, name))
        if cur.rowcount == 0:
            if not replace:
                raise OnboardingError([f"tenant {tenant} already exists (--replace replaces its data)"])
            cur.execute("UPDATE tenants SET active = true WHERE tenant_id = %s", (tenant,))
        for table in ("user_interactions", "items", "users"):
            cur.execute(f"DELETE FROM {table} WHERE tenant_id = %s", (tenant,))  # noqa: S608 (fixed names)
        _copy(cur, "users", tenant, users)
        _copy(cur, "items", tenant, items)
        _copy(cur, "user_interactions", tenant, interactions)
        dq_config.set_valid_types(cur, tenant, list(types))
        before_commit()


class TrainingFiles:
    """A tenant's new training files: written beside its current ones under hidden names, which the
    training reader skips (it takes `*.parquet`), then swapped in; until `finish`, `undo` restores the old."""

    def __init__(self, base, tenant: str, table: pa.Table):
        rows_per_part = ROWS_PER_PART
        self.folder = storage.training_dir(base, tenant)
        self.token = secrets.token_hex(4)
        starts = range(0, max(table.num_rows, 1), rows_per_part)
        self.names = [f"part-{n:05d}.parquet" for n in range(len(starts))]
        self._backups: list[tuple] = []
        self._swapped = False
        try:
            for name, start in zip(self.names, starts, strict=True):
                buffer = io.BytesIO()
                pq.write_table(table.slice(start, rows_per_part), buffer, compression="zstd")
                storage.write_bytes(self._hidden(name, "new"), buffer.getvalue())
        except BaseException:
            self.undo()
            raise

    def _hidden(self, name: str, kind: str):
        return self.folder / f".{name}.{self.token}.{kind}"

    def swap(self) -> None:
        self._swapped = True
        for old in sorted(p for p in self.folder.iterdir() if not p.name.startswith(".")):
            self._backups.append((old.rename(self._hidden(old.name, "old")), old))
        for name in self.names:
            self._hidden(name, "new").rename(self.folder / name)

    def finish(self) -> None:
        for backup, _ in self._backups:
            backup.unlink()

    def undo(self) -> None:
        """Best effort, after a failure: remove the new files and put the old ones back."""
        for name in self.names:
            for path in (self._hidden(name, "new"), *([self.folder / name] if self._swapped else [])):
                if path.exists():
                    path.unlink()
        for backup, original in self._backups:
            backup.rename(original)


def has_data(conn, base, tenant: str) -> bool:
    with transaction(conn) as cur:
        cur.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant,))
        registered = cur.fetchone() is not None
    folder = storage.training_dir(base, tenant)
    return registered or (folder.exists() and any(p.name.endswith(".parquet") for p in folder.iterdir()))


def onboard(conn, base, tenant: str, path: Path, *, name: str | None = None, replace: bool = False,
            types: tuple[str, ...] = INTERACTION_TYPES, now_us: int | None = None) -> dict:
    """Validate the file fully, then register the tenant and write its data; return what was written."""
    problems = [] if is_tenant_slug(tenant) else [f"tenant id {tenant!r} is not a slug: {SLUG_RULE}"]
    problems += type_problems(types)
    interactions, file_problems = read_interactions(path, now_us, types) if types else (None, [])
    problems += file_problems
    if not problems and not replace and has_data(conn, base, tenant):
        problems.append(f"tenant {tenant} already exists (--replace replaces its data)")
    if problems:
        raise OnboardingError(problems)
    users, items = catalogue(interactions)
    files = TrainingFiles(base, tenant, interactions)
    try:
        write_rows(conn, tenant, name or tenant.title(), users, items, interactions, replace=replace, types=types,
                   before_commit=files.swap)
    except BaseException:
        files.undo()
        raise
    files.finish()
    return {"tenant": tenant, "interactions": interactions.num_rows, "users": users.num_rows,
            "items": items.num_rows, "files": [str(files.folder / n) for n in files.names]}


# --- the command -----------------------------------------------------------------------------

def add(stack, tenant: str, path: Path, *, name: str | None = None, replace: bool = False,
        types: tuple[str, ...] | None = None) -> dict:
    """`stackctl tenant add`: onboard into the platform database and storage of the stack at `stack.home`
    (`types` None: INTERACTION_TYPES)."""
    types = INTERACTION_TYPES if types is None else types
    import psycopg2

    from stackctl.native import postgres
    from workers.training.evaluation import Protocol
    from workers.training.selection import MIN_TRAIN_INTERACTIONS

    variables = stack.airflow_home / "variables.json"
    if not variables.exists() or not stack.secret_path("platform_db_password").exists():
        raise StackError(f"no native stack in {stack.home}: start one with `make up` (or pass its --home)")
    values = json.loads(variables.read_text())
    base = storage.root(values["platform_storage_uri"], values.get("platform_storage_conn_id"))
    try:
        conn = postgres.connect(stack, stack.read_secret("platform_db_password"), user="platform", dbname="platform")
    except psycopg2.OperationalError as exc:
        raise StackError(f"the platform database of the stack in {stack.home} is not reachable "
                         f"(is it up? `make status`): {exc}") from None
    try:
        written = onboard(conn, base, tenant, path, name=name, replace=replace, types=types)
    finally:
        conn.close()
    # Below these, model selection cannot judge a learned model: the tenant is served popular items.
    written["warnings"] = [
        f"{written[what]} {what}, fewer than the {minimum} a learned model needs to be judged on: "
        "tenant_model_training will serve this tenant popular items until it has more data"
        for what, minimum in (("interactions", MIN_TRAIN_INTERACTIONS), ("users", Protocol().min_eval_users))
        if written[what] < minimum]
    return written
