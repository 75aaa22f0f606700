"""Medians, spreads, ratios to the best peer, and Markdown tables."""
from __future__ import annotations

import math
import statistics
from typing import Iterable, List, Optional, Sequence

OURS = "xedullm"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of the values."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def spread(values: Sequence[float], digits: int = 1) -> str:
    """``median (min–max)``: with a handful of repeats the range says more than a deviation."""
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(median(values), digits)} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"


def ratio(value: Optional[float], best: Optional[float]) -> str:
    if value is None or not best:
        return "–"
    return f"{value / best:.2f}×"


def best_peer(rows: dict, lower_is_better: bool) -> Optional[float]:
    """Best value among the peers (every contestant except ours)."""
    peers = [v for name, v in rows.items() if name != OURS and v is not None]
    if not peers:
        return None
    return min(peers) if lower_is_better else max(peers)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, r)) for r in rows]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def join(blocks: List[str]) -> str:
    return "\n\n".join(b for b in blocks if b)
