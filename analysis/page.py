"""The HTML page of a report (:mod:`analysis.report`): one self-contained file."""

from __future__ import annotations

import html
import time
from typing import Any


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
     max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
caption{text-align:left;font-weight:bold;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}
td.r,th.r{text-align:right}td.l,th.l{text-align:left}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.5em 1em;margin:.5em 0}
.note{color:#555;font-size:.85em;margin:.2em 0}
figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:.85em}
code{background:#f3f3f3;padding:0 .2em}
"""


def page(data: Any, report: Any, sections: list[str]) -> str:
    """The report's HTML page: the sweeps' table, warnings, notes, then ``sections``."""
    esc = html.escape
    studies = ", ".join(dict.fromkeys(s.study for s in data.sweeps))
    rows = []
    for s in data.sweeps:
        st = data.trials[data.trials["sweep_run_id"] == s.run_id]
        sched = (f"ASHA (grace {s.grace_period:g}, reduction factor {s.reduction_factor:g})"
                 if s.prunes and s.grace_period and s.reduction_factor
                 else "ASHA with nothing to prune: every trial to the end" if s.scheduler == "asha" else s.scheduler)
        swept = ", ".join(f"{p.short} {p.describe()}" for p in s.swept) or "nothing"
        git = s.tags.get("git_sha", "")[:10] + (" (dirty)" if s.tags.get("git_dirty") == "true" else "")
        models = ", ".join(dict.fromkeys(st["model"])) if len(st) else s.params.get("model", "")
        rows.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in (
            s.name, s.run_id, s.task, models, s.algorithm, sched, swept,
            f"{data.n_planned(s.run_id)}: {data.status_text(s.run_id)}", git)) + "</tr>")
    sweeps = ("<table><caption>Sweeps</caption><thead><tr>" + "".join(
        f"<th>{h}</th>" for h in ("sweep", "parent run", "task", "model", "search", "scheduler",
                                  "swept", "trials", "git")) + "</tr></thead><tbody>" + "".join(rows)
        + "</tbody></table>")
    source = (f"experiment <code>{esc(data.experiment)}</code>" if data.experiment is not None
              else "selected sweeps")
    warn = "".join(f'<div class="warn">warning: {esc(w)}</div>' for w in report.warnings)
    notes = "".join(f'<p class="note">note: {esc(n)}</p>' for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lorasweep analysis: {esc(studies)}</title>
<style>{_CSS}</style></head><body>
<h1>lorasweep analysis: {esc(studies)}</h1>
<p>{source} in <code>{esc(data.tracking_uri)}</code>; {data.n_planned()} trials ({esc(data.status_text())}; {len(data.trials)} with an MLflow run) from {len(data.sweeps)}
sweep(s); written {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}.</p>
{sweeps}
{warn}{notes}
{''.join(sections)}
</body></html>
"""
