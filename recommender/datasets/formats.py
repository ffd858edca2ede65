"""The two file formats a log of feedback comes in, read and validated row by
row, and the store's own written. No Django here: the readers give plain
records, so a notebook can use them too (docs/offline.md describes both).

``obd``: a folder in the Open Bandit Dataset's layout: the log CSV (one row
per shown item: an unnamed index, ``timestamp``, ``item_id``, ``position``
1-based, ``click``, ``propensity_score``, ``user_feature_*``,
``user-item_affinity_<item>``) and ``item_context.csv`` (``item_id``,
``item_feature_0`` numeric, ``item_feature_1..`` hashed categorical).

``store``: what ``manage.py export_logged_feedback`` writes: ``items.csv``
(the catalog's features) and ``feedback.csv`` (one row per shown item of the
store's impressions, with the state the policy saw).

A malformed file raises ``FormatError`` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

FORMATS = ("obd", "store")

OBD_ITEMS = "item_context.csv"
OBD_CATEGORY_FEATURE = "item_feature_3"
"""The hashed item feature used as the category: the coarsest of the three (7
values in the "all" campaign), and every value of item_feature_2 lies within
one of its values, as a subcategory lies within its category."""

STORE_ITEMS = "items.csv"
STORE_FEEDBACK = "feedback.csv"
STORE_ITEM_COLUMNS = ("item_id", "category_id", "price", "brand", "colour", "material")
STORE_FEEDBACK_COLUMNS = (
    "impression_id",
    "created_at",
    "session",
    "slot",
    "policy_name",
    "policy_version",
    "epsilon",
    "position",
    "item_id",
    "propensity",
    "click",
    "reward",
    "next_impression_id",
    "done",
    "state",
    "unavailable",
)


class FormatError(ValueError):
    """A file that is not in the format it claims to be, with where."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = f"{Path(path).name} line {line}" if line is not None else Path(path).name
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class ItemRecord:
    """One item of a log's catalog, as the model reads it."""

    item_id: int
    category: int
    price: float
    attributes: tuple[float, ...]  # dense numeric features (one-hot buckets, numbers)
    features: dict  # the file's own values, kept as they were


@dataclass(frozen=True)
class RowRecord:
    """One shown item of a logged carousel."""

    line: int  # where it was read (for errors)
    key: str  # unique within the log
    timestamp: datetime
    item_id: int
    position: int  # 0-based
    propensity: float
    click: bool
    reward: float
    context: dict  # format-specific: what the policy knew (see docs/offline.md)
    impression: str = ""  # groups the rows of one carousel, where the log keeps it
    session: str = ""
    next_impression: str = ""
    done: bool = True


@dataclass(frozen=True)
class LogFiles:
    """A folder's files in one format: the catalog, the rows, and what the rows
    will be read from."""

    format: str
    items_path: Path
    rows_path: Path

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.items_path, self.rows_path)

    def digest(self) -> str:
        """SHA-256 over both files' bytes: the same files import to the same dataset."""
        digest = hashlib.sha256(self.format.encode())
        for path in self.paths:
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def count_rows(self) -> int:
        """Lines after the header (for a progress bar; quoted newlines aside)."""
        with self.rows_path.open("rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)


def locate(path: Path | str, format: str) -> LogFiles:
    """The files of a folder (or, for obd, of the log CSV itself) in ``format``."""
    path = Path(path)
    if format not in FORMATS:
        raise FormatError(path, None, f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
    if format == "obd":
        if path.is_file():
            folder, rows = path.parent, path
        else:
            folder = path
            logs = sorted(p for p in path.glob("*.csv") if p.name != OBD_ITEMS)
            if len(logs) != 1:
                raise FormatError(
                    path, None, f"expected one log CSV beside {OBD_ITEMS}, found {len(logs)}"
                )
            rows = logs[0]
        items = folder / OBD_ITEMS
    else:
        items, rows = path / STORE_ITEMS, path / STORE_FEEDBACK
    for required in (items, rows):
        if not required.is_file():
            raise FormatError(required, None, "no such file")
    return LogFiles(format, items, rows)


def read_items(files: LogFiles) -> list[ItemRecord]:
    return (
        _read_obd_items(files.items_path)
        if files.format == "obd"
        else _read_store_items(files.items_path)
    )


def read_rows(files: LogFiles, item_ids: set[int]) -> Iterator[RowRecord]:
    """The log's rows in file order, each validated; ``item_ids`` are the items
    the catalog holds (a row showing another one is malformed)."""
    if files.format == "obd":
        return _read_obd_rows(files.rows_path, item_ids)
    return _read_store_rows(files.rows_path, item_ids)


# ---------------------------------------------------------------------------
# Open Bandit Dataset
# ---------------------------------------------------------------------------


def _read_obd_items(path: Path) -> list[ItemRecord]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path, ("item_id", "item_feature_0"))
        categorical = sorted(
            (c for c in header if c.startswith("item_feature_") and c != "item_feature_0"),
            key=lambda c: int(c.rsplit("_", 1)[1]) if c.rsplit("_", 1)[1].isdecimal() else 0,
        )
        if OBD_CATEGORY_FEATURE not in categorical:
            raise FormatError(path, 1, f"missing column {OBD_CATEGORY_FEATURE!r}")
        records = []
        for row in reader:
            values = _row_dict(reader, path, header, row)
            line = reader.line_num
            item_id = _int(values["item_id"], "item_id", path, line, minimum=0)
            number = _float(values["item_feature_0"], "item_feature_0", path, line)
            for column in categorical:
                if not values[column]:
                    raise FormatError(path, line, f"{column} is empty")
            records.append((line, item_id, number, {c: values[c] for c in categorical}))
    if not records:
        raise FormatError(path, None, "no items")
    seen: set[int] = set()
    for line, item_id, _, _ in records:
        if item_id in seen:
            raise FormatError(path, line, f"item_id {item_id} appears twice")
        seen.add(item_id)
    # Hashed values are coded by first appearance in item order, so two files
    # that hash the same grouping differently (the sample's random and bts
    # folders do) give every item the same codes.
    records.sort(key=lambda r: r[1])
    codes: dict[str, dict[str, int]] = {c: {} for c in categorical}
    for _, _, _, values in records:
        for column in categorical:
            codes[column].setdefault(values[column], len(codes[column]))
    one_hot = [c for c in categorical if c != OBD_CATEGORY_FEATURE]
    width = sum(len(codes[c]) for c in one_hot)
    out = []
    for _, item_id, number, values in records:
        attributes = [0.0] * width
        offset = 0
        for column in one_hot:
            attributes[offset + codes[column][values[column]]] = 1.0
            offset += len(codes[column])
        out.append(
            ItemRecord(
                item_id=item_id,
                category=codes[OBD_CATEGORY_FEATURE][values[OBD_CATEGORY_FEATURE]],
                price=0.0,  # the sample has no price; item_feature_0 is kept as a number
                attributes=(*attributes, number),
                features={"item_feature_0": number, **values},
            )
        )
    return out


def _read_obd_rows(path: Path, item_ids: set[int]) -> Iterator[RowRecord]:
    required = ("timestamp", "item_id", "position", "click", "propensity_score")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path, required)
        key_column = header[0] if header[0] in ("", "index", "Unnamed: 0") else None
        user_columns = sorted(c for c in header if c.startswith("user_feature_"))
        affinity = {
            c: int(c.rsplit("_", 1)[1])
            for c in header
            if c.startswith("user-item_affinity_") and c.rsplit("_", 1)[1].isdecimal()
        }
        for row in reader:
            values = _row_dict(reader, path, header, row)
            line = reader.line_num
            item_id = _int(values["item_id"], "item_id", path, line, minimum=0)
            if item_id not in item_ids:
                raise FormatError(path, line, f"item_id {item_id} is not in {OBD_ITEMS}")
            click = _int(values["click"], "click", path, line, minimum=0)
            if click > 1:
                raise FormatError(path, line, f"click must be 0 or 1, not {click}")
            past = {}
            for column, item in affinity.items():
                score = _float(values[column], column, path, line)
                if score < 0:
                    raise FormatError(path, line, f"{column} must not be negative")
                if score:
                    past[str(item)] = score
            yield RowRecord(
                line=line,
                key=values[key_column] if key_column is not None else str(line),
                timestamp=_timestamp(values["timestamp"], "timestamp", path, line),
                item_id=item_id,
                position=_int(values["position"], "position", path, line, minimum=1) - 1,
                propensity=_propensity(values["propensity_score"], "propensity_score", path, line),
                click=bool(click),
                reward=float(click),
                context={
                    "user_features": [values[c] for c in user_columns],
                    "affinity": past,
                },
            )


# ---------------------------------------------------------------------------
# The store's own export
# ---------------------------------------------------------------------------


def _read_store_items(path: Path) -> list[ItemRecord]:
    """Items with their raw features; attributes are left empty here: the store
    computes them with its own feature code (``recommender.serving.features``)."""
    out = []
    seen: set[int] = set()
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path, STORE_ITEM_COLUMNS)
        for row in reader:
            values = _row_dict(reader, path, header, row)
            line = reader.line_num
            item_id = _int(values["item_id"], "item_id", path, line, minimum=0)
            if item_id in seen:
                raise FormatError(path, line, f"item_id {item_id} appears twice")
            seen.add(item_id)
            price = _float(values["price"], "price", path, line)
            if price < 0:
                raise FormatError(path, line, "price must not be negative")
            out.append(
                ItemRecord(
                    item_id=item_id,
                    category=_int(values["category_id"], "category_id", path, line, minimum=0),
                    price=price,
                    attributes=(),
                    features={c: values[c] for c in ("brand", "colour", "material")},
                )
            )
    if not out:
        raise FormatError(path, None, "no items")
    return out


def _read_store_rows(path: Path, item_ids: set[int]) -> Iterator[RowRecord]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = _header(reader, path, STORE_FEEDBACK_COLUMNS)
        for row in reader:
            values = _row_dict(reader, path, header, row)
            line = reader.line_num
            impression = values["impression_id"]
            if not impression:
                raise FormatError(path, line, "impression_id is empty")
            item_id = _int(values["item_id"], "item_id", path, line, minimum=0)
            if item_id not in item_ids:
                raise FormatError(path, line, f"item_id {item_id} is not in {STORE_ITEMS}")
            position = _int(values["position"], "position", path, line, minimum=0)
            click = _int(values["click"], "click", path, line, minimum=0)
            done = _int(values["done"], "done", path, line, minimum=0)
            if click > 1 or done > 1:
                raise FormatError(path, line, "click and done must be 0 or 1")
            version = values["policy_version"]
            state = _json(values["state"], "state", path, line, dict)
            _check_state(state, path, line)
            unavailable = _json(values["unavailable"], "unavailable", path, line, list)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in unavailable):
                raise FormatError(path, line, "unavailable must be a list of item ids")
            yield RowRecord(
                line=line,
                key=f"{impression}:{position}",
                timestamp=_timestamp(values["created_at"], "created_at", path, line),
                item_id=item_id,
                position=position,
                propensity=_propensity(values["propensity"], "propensity", path, line),
                click=bool(click),
                reward=_float(values["reward"], "reward", path, line),
                impression=impression,
                session=values["session"],
                next_impression=values["next_impression_id"],
                done=bool(done),
                context={
                    "state": state,
                    "unavailable": unavailable,
                    "slot": values["slot"],
                    "policy": {
                        "name": values["policy_name"],
                        "version": (
                            _int(version, "policy_version", path, line, minimum=0)
                            if version
                            else None
                        ),
                        "epsilon": _float(values["epsilon"], "epsilon", path, line),
                    },
                },
            )


def write_store(folder: Path | str, items: Iterable[ItemRecord], rows: Iterable[RowRecord]) -> int:
    """Write ``items.csv`` and ``feedback.csv`` into ``folder`` (created if
    needed); returns the rows written. Numbers are written so that reading
    them back gives the same values, and JSON with sorted keys, so a log
    exported, imported and exported again is byte-identical."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / STORE_ITEMS).open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(STORE_ITEM_COLUMNS)
        for item in items:
            f = item.features
            writer.writerow(
                [
                    item.item_id,
                    item.category,
                    repr(float(item.price)),
                    f.get("brand", ""),
                    f.get("colour", ""),
                    f.get("material", ""),
                ]
            )
    written = 0
    with (folder / STORE_FEEDBACK).open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(STORE_FEEDBACK_COLUMNS)
        for row in rows:
            context = row.context
            policy = context.get("policy", {})
            version = policy.get("version")
            writer.writerow(
                [
                    row.impression,
                    row.timestamp.isoformat(),
                    row.session,
                    context.get("slot", ""),
                    policy.get("name", ""),
                    "" if version is None else version,
                    repr(float(policy.get("epsilon", 0.0))),
                    row.position,
                    row.item_id,
                    repr(float(row.propensity)),
                    int(row.click),
                    repr(float(row.reward)),
                    row.next_impression,
                    int(row.done),
                    _dumps(context.get("state", {})),
                    _dumps(list(context.get("unavailable", []))),
                ]
            )
            written += 1
    return written


# ---------------------------------------------------------------------------
# Field checks
# ---------------------------------------------------------------------------


def _header(reader, path: Path, required: Iterable[str]) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise FormatError(path, None, "the file is empty") from None
    except csv.Error as exc:
        raise FormatError(path, 1, f"not CSV: {exc}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise FormatError(path, 1, f"missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise FormatError(path, 1, "a column name appears twice")
    return header


def _row_dict(reader, path: Path, header: list[str], row: list[str]) -> dict[str, str]:
    if len(row) != len(header):
        raise FormatError(
            path, reader.line_num, f"{len(row)} fields where the header has {len(header)}"
        )
    return dict(zip(header, row, strict=True))


def _int(text: str, name: str, path: Path, line: int, *, minimum: int | None = None) -> int:
    text = text.strip()
    # isdecimal, not isdigit: int() refuses digits like '²' that isdigit accepts.
    body = text[1:] if text[:1] == "-" else text
    if not body.isdecimal():
        raise FormatError(path, line, f"{name} {text!r} is not a whole number")
    value = int(text)
    if minimum is not None and value < minimum:
        raise FormatError(path, line, f"{name} must be at least {minimum}, not {value}")
    return value


def _float(text: str, name: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormatError(path, line, f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise FormatError(path, line, f"{name} must be finite, not {text!r}")
    return value


def _propensity(text: str, name: str, path: Path, line: int) -> float:
    value = _float(text, name, path, line)
    if not 0.0 < value <= 1.0:
        raise FormatError(path, line, f"{name} must be in (0, 1], not {value:g}")
    return value


def _timestamp(text: str, name: str, path: Path, line: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FormatError(path, line, f"{name} {text!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        raise FormatError(path, line, f"{name} {text!r} has no time zone")
    return value


def _json(text: str, name: str, path: Path, line: int, kind: type):
    try:
        value = json.loads(text)
    except ValueError:
        raise FormatError(path, line, f"{name} is not JSON") from None
    if not isinstance(value, kind):
        raise FormatError(path, line, f"{name} must be a JSON {kind.__name__}")
    return value


def _check_state(state: dict, path: Path, line: int) -> None:
    """The state must read as an Observation (slot 0..2, equal-length recent lists)."""
    slot = state.get("slot")
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot <= 2:
        raise FormatError(path, line, "state.slot must be 0, 1 or 2")
    lengths = {len(state.get(k, [])) for k in ("recent_items", "recent_events", "recent_ages")}
    if len(lengths) > 1:
        raise FormatError(path, line, "state's recent_items, _events and _ages differ in length")
    for key in ("recent_items", "cart_items", "history_items"):
        items = state.get(key, [])
        if not isinstance(items, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in items
        ):
            raise FormatError(path, line, f"state.{key} must be a list of item ids")
    events = state.get("recent_events", [])
    if not all(isinstance(e, int) and 0 <= e <= 3 for e in events):
        raise FormatError(path, line, "state.recent_events must hold event codes 0..3")
    ages = state.get("recent_ages", [])
    if not all(isinstance(a, int | float) and math.isfinite(a) for a in ages):
        raise FormatError(path, line, "state.recent_ages must be finite numbers")


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
