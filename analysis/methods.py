"""The quality / speed / memory comparison of fine-tuning methods (full, LoRA, DoRA, VeRA, ...).

A sweep that varies ``adapter.method`` ends with one row per method: the task's metric (the
median over the method's completed trials, e.g. over seeds), trainable parameters,
training throughput (samples/s, median) and peak memory (the largest of its trials; on CPU the
process's resident set, on GPU ``torch.cuda.max_memory_allocated``). :func:`method_rows` builds
the rows from the sweep's result rows, :func:`render` prints them, :func:`plot` draws the
metric against trainable parameters and against samples/s (marker area ~ peak memory).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from trainables.report import K

COLUMNS = ("method", "trials", "completed", "metric", K.trainable_params, K.samples_per_s, K.peak_mem_mb)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def method_rows(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per method, in the order the methods first appear in ``rows`` (each row of
    ``rows`` has ``method``, ``status``, ``metric``, ``trainable_params``, ``samples_per_s``,
    ``peak_mem_mb``). The metric is the median over completed trials (all trials when none
    completed, e.g. every one stopped by ASHA, so the table still compares something)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        done = [r for r in group if r["status"] == "completed"]
        vals = [v for r in (done or group) if (v := _num(r.get(metric))) is not None]
        speeds = [v for r in group if (v := _num(r.get(K.samples_per_s))) is not None]
        mems = [v for r in group if (v := _num(r.get(K.peak_mem_mb))) is not None]
        params = [v for r in group if (v := _num(r.get(K.trainable_params))) is not None]
        out.append({"method": method, "trials": len(group), "completed": len(done),
                    "metric": statistics.median(vals) if vals else None,
                    K.trainable_params: int(max(params)) if params else None,
                    K.samples_per_s: statistics.median(speeds) if speeds else None,
                    K.peak_mem_mb: max(mems) if mems else None})
    return out


def render(table: list[dict[str, Any]], *, heading: str, fmt: str = "{:.4f}", title: str = "",
           source: dict[str, str] | None = None) -> str:
    """The methods table; ``source``: the source's number for each method (text, ``F1 92.00``),
    a last column where given."""
    from tabulate import tabulate

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else spec.format(v)

    body = [[r["method"], f"{r['completed']}/{r['trials']}", f(r["metric"], fmt),
             f(r[K.trainable_params], "{:,}"), f(r[K.samples_per_s], "{:.1f}"), f(r[K.peak_mem_mb], "{:.0f}")]
            + ([source.get(str(r["method"]), "-")] if source else []) for r in table]
    headers = ["method", "completed", heading, "trainable params", "samples/s", "peak MB"] + \
        (["source"] if source else [])
    text = tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
    return (f"\n  {title}\n" if title else "\n") + text


def plot(table: list[dict[str, Any]], out: Path, *, heading: str, title: str) -> Path | None:
    """``out`` (PNG): the metric against trainable parameters (log axis) and against
    samples/s, one point per method in its colour (one legend for both panels), marker area
    proportional to peak memory."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [r for r in table if r["metric"] is not None]
    if not pts:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    from matplotlib import colormaps

    mem = [r[K.peak_mem_mb] or 0.0 for r in pts]
    top = max(mem) or 1.0
    colors = {r["method"]: colormaps["tab10"](i % 10) for i, r in enumerate(pts)}
    # Points that coincide (two methods at one value) stay visible: hollow rings, each in its
    # colour, a later one inside an earlier one.
    for ax, key, label, log in ((axes[0], K.trainable_params, "trainable parameters", True),
                                (axes[1], K.samples_per_s, "training samples/s", False)):
        seen: dict[tuple[float, float], int] = {}
        for r, m in zip(pts, mem):
            if r[key] is None:
                continue
            inside = seen.setdefault((r[key], r["metric"]), 0)
            seen[(r[key], r["metric"])] += 1
            ax.scatter([r[key]], [r["metric"]], s=(40 + 260 * m / top) * 0.45 ** inside, facecolors="none",
                       linewidths=2, edgecolors=[colors[r["method"]]], label=r["method"])
        if log:
            ax.set_xscale("log")
        ax.margins(x=0.1, y=0.1)
        ax.set_xlabel(label)
        ax.set_ylabel(heading)
        ax.grid(alpha=0.3)
    handles = {lab: h for h, lab in zip(*axes[0].get_legend_handles_labels())}
    fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=8, frameon=False,
               markerscale=0.6)
    fig.suptitle(f"{title} (marker area ~ peak memory)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
