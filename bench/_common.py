"""Synthetic store data and output helpers shared by the RL benchmarks."""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np

from recommender.rl.types import EventType, ItemCatalog, Observation, Slot

N_CATEGORIES = 50
N_ATTRIBUTES = 8


def synthetic_catalog(n_items: int, rng: np.random.Generator) -> ItemCatalog:
    """``n_items`` products with autoincrement-like ids, log-normal prices and
    one-hot-ish attributes, as the store's feature export produces them."""
    return ItemCatalog(
        ids=np.arange(1, n_items + 1, dtype=np.int64),
        categories=rng.integers(0, N_CATEGORIES, n_items),
        prices=np.exp(rng.normal(3.5, 1.0, n_items)).astype(np.float32),
        attributes=(rng.random((n_items, N_ATTRIBUTES)) < 0.2).astype(np.float32),
    )


def synthetic_observation(
    catalog: ItemCatalog,
    rng: np.random.Generator,
    n_recent: int = 16,
    n_cart: int = 3,
    n_history: int = 32,
) -> Observation:
    """A busy session: full recent window, a few cart items, a signed-in history."""
    ids = catalog.ids

    def pick(n: int) -> tuple[int, ...]:
        return tuple(int(i) for i in ids[rng.integers(0, len(ids), n)])

    return Observation(
        slot=Slot(int(rng.integers(len(Slot)))),
        current_item=int(ids[rng.integers(len(ids))]),
        recent_items=pick(n_recent),
        recent_events=tuple(int(e) for e in rng.integers(0, len(EventType), n_recent)),
        recent_ages=tuple(float(a) for a in np.sort(rng.uniform(0, 3600, n_recent))[::-1]),
        cart_items=pick(n_cart),
        history_items=pick(n_history),
        page_depth=int(rng.integers(0, 20)),
    )


def parser(description: str) -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    arguments.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    return arguments


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(title)
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    print(f"({platform.processor() or platform.machine()}, python {platform.python_version()})")


def print_json(result: dict) -> None:
    print(json.dumps(result))
