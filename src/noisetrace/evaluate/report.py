"""Evaluation reports: JSON for machines, Markdown and self-contained HTML for people.

Input is the dict from :func:`noisetrace.evaluate.protocols.evaluate` (sections of generic
tables ``{"title", "columns", "rows"}``, ROC points per condition, a summary). Every file is
written under a temporary name and renamed, so a report directory never holds half a file.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from noisetrace.io import atomic_write

REPORT_FILES = ("report.json", "report.md", "report.html", "scores.csv")


def _clean(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the JSON is strict."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "roc"


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


# -- plots -----------------------------------------------------------------------------------
def roc_png(report: dict[str, Any], names: list[str], title: str) -> bytes:
    """One ROC figure (PNG bytes) with a curve per condition, AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], ls=":", c="0.6", lw=1)
    ms = report["metrics"]["sample"]
    # A matched-format curve takes the colour of its raw condition, dashed.
    base = list(dict.fromkeys(n.removeprefix("matched ") for n in names))
    colours = {b: f"C{i % 10}" for i, b in enumerate(base)}
    for n in names:
        pts = report["roc"].get(n) or {}
        if not pts.get("fpr"):
            continue
        auc = ms[n]["auc"]
        label = f"{n} (AUC {auc:.3f})" if auc is not None and math.isfinite(auc) else n
        ax.plot(pts["fpr"], pts["tpr"], lw=1.6, label=label, c=colours[n.removeprefix("matched ")],
                ls="--" if n.startswith("matched ") else "-")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- renderers -------------------------------------------------------------------------------
def _md_table(t: dict[str, Any]) -> str:
    esc = [str(c).replace("|", "\\|") for c in t["columns"]]
    lines = [f"**{t['title']}**", "", "| " + " | ".join(esc) + " |",
             "|" + "|".join("---" for _ in esc) + "|"]
    for r in t["rows"]:
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def render_markdown(report: dict[str, Any], pngs: dict[str, str]) -> str:
    """Markdown report; ROC figures referenced as the PNG files beside it."""
    m = report["model"]
    out = [f"# noisetrace evaluation: {m['name']}", "",
           f"Created {report.get('created', '')}. Data: {', '.join(report.get('data', []))}.", "",
           "## Summary", ""] + [f"- {s}" for s in report["summary"]] + [""]
    out += ["## Conditions", "", "| condition | what the detector sees |", "|---|---|"]
    out += [f"| {n} | {c['description']} |" for n, c in report["conditions"].items()]
    out.append("")
    for sec in report["sections"]:
        out += [f"## {sec['title']}", "", sec["description"], ""]
        for t in sec["tables"]:
            out += [_md_table(t), ""]
        if sec["protocol"] in pngs:
            out += [f"![ROC curves, {sec['title']}]({pngs[sec['protocol']]})", ""]
    if report.get("unreadable"):
        out += ["## Unreadable files", ""]
        out += [f"- `{f['path']}`: {f['error']}" for f in report["unreadable"]]
        out.append("")
    o = report["options"]
    out += ["## Settings", "", "```json", json.dumps(o, indent=2), "```", ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d1d1f}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f5}td:first-child,th:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}.wrap{overflow-x:auto}
img{max-width:520px;border:1px solid #eee}.muted{color:#666;font-size:.9em}
"""


def _html_table(t: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in t["columns"])
    body = "".join("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in r) + "</tr>"
                   for r in t["rows"])
    return (f'<div class="wrap"><table><caption>{e(t["title"])}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def render_html(report: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """One self-contained HTML page: tables, and ROC figures as inline PNG."""
    e = html.escape
    m = report["model"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>noisetrace evaluation: {e(m['name'])}</title><style>{_CSS}</style>"
             f"</head><body><h1>noisetrace evaluation: {e(m['name'])}</h1>",
             f"<p class='muted'>Created {e(report.get('created', ''))}. Data: "
             f"{e(', '.join(report.get('data', [])))}. Threshold {m['threshold']:.2f}.</p>",
             "<h2>Summary</h2><ul>"
             + "".join(f"<li>{e(s)}</li>" for s in report["summary"]) + "</ul>",
             "<h2>Conditions</h2>",
             _html_table({"title": "", "columns": ["condition", "what the detector sees"],
                          "rows": [[n, c["description"]]
                                   for n, c in report["conditions"].items()]})]
    for sec in report["sections"]:
        parts.append(f"<h2>{e(sec['title'])}</h2><p>{e(sec['description'])}</p>")
        parts += [_html_table(t) for t in sec["tables"]]
        if sec["protocol"] in pngs:
            b64 = base64.b64encode(pngs[sec["protocol"]]).decode("ascii")
            parts.append(f"<img alt='ROC curves, {e(sec['title'])}' "
                         f"src='data:image/png;base64,{b64}'>")
    if report.get("unreadable"):
        parts.append("<h2>Unreadable files</h2><ul>" + "".join(
            f"<li><code>{e(f['path'])}</code>: {e(f['error'])}</li>"
            for f in report["unreadable"]) + "</ul>")
    parts.append("<h2>Settings</h2><pre>" + e(json.dumps(report["options"], indent=2))
                 + "</pre></body></html>")
    return "\n".join(parts)


def write_scores_csv(path: Path, scores: list[dict[str, Any]]) -> None:
    """Per-sample probabilities under every condition (one column per condition)."""
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in scores for k in r))
    w = csv.DictWriter(buf, fieldnames=cols or ["path"])
    w.writeheader()
    w.writerows(scores)
    atomic_write(path, buf.getvalue())


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, report.html, scores.csv and one ROC PNG per protocol
    with image/video conditions; returns the paths by name."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    report.setdefault("created", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    report = _clean(report)
    written: dict[str, Path] = {}
    pngs: dict[str, bytes] = {}
    png_names: dict[str, str] = {}
    for sec in report["sections"]:
        if sec.get("roc") and report.get("roc"):
            name = f"roc_{_slug(sec['protocol'])}.png"
            pngs[sec["protocol"]] = roc_png(report, sec["roc"], sec["title"])
            png_names[sec["protocol"]] = name
            atomic_write(d / name, pngs[sec["protocol"]])
            written[name] = d / name
    scores = report.pop("scores", None)
    if scores is not None:
        write_scores_csv(d / "scores.csv", scores)
        written["scores.csv"] = d / "scores.csv"
    atomic_write(d / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write(d / "report.md", render_markdown(report, png_names))
    atomic_write(d / "report.html", render_html(report, pngs))
    for n in ("report.json", "report.md", "report.html"):
        written[n] = d / n
    return written
