"""The report's pages: Markdown, one self-contained HTML file, and an A4 PDF printed from it.

The HTML opens with the plain-language page (``plain_language``), which the
PDF prints alone on its first page; the evidence follows. Tables wrap long
digests instead of running off the page. The PDF is headless Chromium's
print of the HTML (the browser the report's test renders it in): no PDF
library of ours lays out a page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
import tempfile
from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from flowerbed.audit.report_data import Report
from flowerbed.errors import FlowerbedError

PDF_TIMEOUT_S = 120
LEGEND_SITES = 12  # beyond that a legend hides the plot
LEAK_COLUMNS = {
    "attack_auc": "attack AUC",
    "tpr_at_1pct_fpr": "TPR at 1 % FPR",
    "tpr_at_01pct_fpr": "TPR at 0.1 % FPR",
    "canary_epsilon": "canary epsilon (lower bound)",
}
# Lines that coincide stay apart: each site its own dash, marker and marker size.
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
CSS = """
@page{size:A4;margin:14mm}
body{font-family:sans-serif;max-width:60em;margin:1.5em auto;color:#222;font-size:11pt}
table{border-collapse:collapse;margin:.8em 0;width:100%;table-layout:fixed}
td,th{border:1px solid #bbb;padding:.25em .4em;text-align:right;overflow-wrap:anywhere;
font-size:9pt}
th:first-child,td:first-child{text-align:left}
#first-page{break-after:page}#first-page h2{font-size:13pt;margin:.9em 0 .2em}
#first-page p{margin:.2em 0}
img{max-width:100%;height:auto;break-inside:avoid}h2{font-size:13pt}
.ok{color:#1a7f37}.bad{color:#b42318}
@media screen{body{padding:0 1.5em}}
table.facts td{text-align:left}table.facts th{width:30%}
#sign-off{margin-top:1.5em}#sign-off td{height:2.2em;text-align:left}
"""


def _line_plot(series: dict[str, dict[int, float]], ylabel: str, title: str) -> Figure:
    """One line per site over the rounds; coinciding lines stay distinguishable (each its
    own dash, hollow marker and marker size, larger drawn first)."""
    figure, axis = plt.subplots(figsize=(7, 3.6))
    styles = cycle(STYLES)
    markers = cycle(MARKERS)
    count = max(len(series), 1)
    for position, (site, values) in enumerate(series.items()):
        axis.plot(
            list(values), list(values.values()), linestyle=next(styles), marker=next(markers),
            markersize=11 - 7 * position / count, fillstyle="none", label=site, linewidth=1.5,
        )  # fmt: skip
    axis.set(xlabel="round", ylabel=ylabel, title=title)
    rounds = sorted({r for values in series.values() for r in values})
    axis.set_xticks(rounds)
    if len(series) <= LEGEND_SITES:  # beyond that a legend hides the plot
        axis.legend(fontsize="small", loc="best")
    return figure


def _privacy_plot(report: Report) -> bytes:
    figure = _line_plot(report.privacy, "epsilon spent", "privacy spent per site")
    axis = figure.axes[0]
    for budget in sorted(set(report.budgets.values())):
        axis.axhline(budget, linestyle="--", color="grey", linewidth=0.8)
        axis.annotate(f"budget {budget:g}", (axis.get_xlim()[0], budget), fontsize="small",
                      color="grey", va="bottom")  # fmt: skip
    return _png(figure)


def _scores_plot(report: Report) -> bytes:
    dice = any("dice" in scores for scores in report.test_scores.values())
    score = "Dice" if dice else "AUC"
    return _png(_line_plot(report.scores_by_round, f"test {score}", f"test {score} per site"))


def _flow_plot(report: Report) -> bytes:
    countries = report.countries
    grid = [[report.flows.get(s, {}).get(r, 0) / 1e6 for r in countries] for s in countries]
    side = 1.8 + 1.1 * len(countries)
    figure, axis = plt.subplots(figsize=(side + 1.2, side))
    image = axis.imshow(grid, cmap="Blues")
    axis.set(
        xticks=range(len(countries)), yticks=range(len(countries)),
        xticklabels=countries, yticklabels=countries,
        xlabel="received in (country)", ylabel="sent from (country)",
        title="model parameters sent, MB",
    )  # fmt: skip
    top = max((max(row) for row in grid), default=0.0)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ink = "white" if value > top / 2 else "black"
            axis.text(j, i, f"{value:.2f} MB", ha="center", va="center", color=ink)
    figure.colorbar(image, ax=axis, label="MB")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _figure(values: dict[str, float], name: str) -> str:
    return f"{values[name]:.3f}" if name in values else "-"


def _tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table, shared by Markdown and HTML."""
    countries = report.countries
    flow_rows = [
        [s, *[f"{report.flows.get(s, {}).get(r, 0):,}" for r in countries]] for s in countries
    ]
    party_rows = [
        [p["party"], str(p["country"]), str(p["messages_out"]), f"{p['bytes_out']:,}",
         str(p["messages_in"]), f"{p['bytes_in']:,}", ", ".join(p["peers"]), p["chain"]]
        for p in report.parties
    ]  # fmt: skip
    categories = sorted({c for kinds in report.payload_kinds.values() for c in kinds})
    kind_rows = [
        [site, *[str(kinds.get(c, 0)) for c in categories]]
        for site, kinds in report.payload_kinds.items()
    ]
    rounds = sorted({r for spent in report.privacy.values() for r in spent})
    privacy_rows = [
        [site, f"{report.budgets.get(site, 0):g}",
         *[f"{spent[r]:.3f}" if r in spent else "-" for r in rounds],
         f"{report.lifetime[site]:.3f} of {report.lifetime_budgets.get(site, 0):g}"
         if site in report.lifetime else "-",
         *[_figure(report.leak.get(site, {}), name) for name in LEAK_COLUMNS],
         _test_score(report.test_scores.get(site, {}))]
        for site, spent in report.privacy.items()
    ]  # fmt: skip
    signature = report.signature
    signed_rows = [
        ["report sha256", report.report_sha256],
        ["Flower runs", ", ".join(map(str, signature["runs"])) or "simulated"],
        ["started", str(signature["started"])], ["ended", str(signature["ended"])],
        ["duration", f"{signature['duration_s']} s"], ["strategy", signature["strategy"]],
        ["app bundle sha256", signature["app_sha256"] or "none: a simulation submits no bundle"],
        ["approved by", ", ".join(signature["app_approved_by"]) or "-"],
        ["not approved by", ", ".join(signature["app_not_approved_by"]) or "-"],
        ["roster sha256", ", ".join(signature["roster_sha256"]) or "no roster pinned"],
        *[[f"ledger head: {party}", f"entry {head['index']}, {head['hash']}"]
          for party, head in signature["ledger_heads"].items()],
    ]  # fmt: skip
    return [
        ("What a signature on this report covers (the ledger heads are signed by their "
         "parties; through each chain a head vouches for every entry before it)",
         ["", ""], signed_rows),
        ("Country flow matrix: bytes of parameters (site updates, sealed or not, and the "
         "coordinator's global model), sender (row) to receiver (column)",
         ["from \\ to", *countries], flow_rows),
        ("Messages and bytes per party", ["party", "country", "messages out", "bytes out",
         "messages in", "bytes in", "with", "chain"], party_rows),
        ("Kinds of payload that left each site (messages)", ["site", *categories], kind_rows),
        ("Sites flagged by honesty checks (probe answers, updates' size and direction, "
         "gossip sketches)",
         ["round", "site", "why", "excluded from the aggregate"],
         [[str(f["round"]), f["site"], f["reason"], "yes" if f["excluded"] else "no"]
          for f in report.flagged]),
        ("Sites that failed a round or did not answer it (round 0: the roll call)",
         ["round", "site", "what", "why"],
         [[str(f["round"]), f["site"], f["what"], f["reason"]] for f in report.failed]),
        ("Privacy: the run's budget and epsilon spent after each round; the site's data "
         "set's lifetime spend over every run so far, of its lifetime budget (recomputed by "
         "verify from the ledgered DP steps); and the privacy measured in fact on the site's "
         "last model: a membership-inference attack's AUC (0.5: no leak) and true-positive "
         "rate at 1 % and 0.1 % false positives, the canaries' lower bound on epsilon, and "
         "the model's test score (AUC; Dice for segmentation)",
         ["site", "run budget", *[f"round {r}" for r in rounds], "lifetime",
          *LEAK_COLUMNS.values(), "test score"],
         privacy_rows),
    ]  # fmt: skip


def _test_score(scores: dict[str, float]) -> str:
    """A site's last test score as the task measures it: Dice for masks, else AUC."""
    if "dice" in scores:
        return f"Dice {scores['dice']:.3f}"
    return f"AUC {scores['auc']:.3f}" if "auc" in scores else "-"


def _test_score(scores: dict[str, float]) -> str:
    """A site's last test score as the task measures it: Dice for masks, else AUC."""
    if "dice" in scores:
        return f"Dice {scores['dice']:.3f}"
    return f"AUC {scores['auc']:.3f}" if "auc" in scores else "-"


def _run_lines(report: Report) -> list[tuple[str, str]]:
    run = report.run
    return [
        ("strategy", f"{run['strategy']} ({run['topology']})"),
        ("rounds", f"{run['rounds']} x {run['local_epochs']} local epochs"),
        ("model", run["model"]),
        ("sites", str(run["sites"])),
        ("coordinator country", run["coordinator_country"]),
        ("differential privacy", run["dp"]),
        ("canaries per site", str(run["canaries"])),
        ("residency policy", json.dumps(run["residency"])),
        (
            "rendered with (not signed)",
            ", ".join(f"{k} {v}" for k, v in report.rendered_with.items()),
        ),
    ]


def write_markdown(report: Report, out: Path, plots: dict[str, bytes]) -> Path:
    lines = ["# Data-residency audit report", ""]
    for heading, sentences in report.summary.items():
        lines += [f"## {heading}", "", *[f"- {s}" for s in sentences], ""]
    lines += ["## The run", ""] + [f"- **{key}**: {value}" for key, value in _run_lines(report)]
    for title, header, rows in _tables(report):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines += ["|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    for name in plots:
        (out / f"report_{name}.png").write_bytes(plots[name])
        lines += ["", f"![{name}](report_{name}.png)"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_html(report: Report, out: Path, plots: dict[str, bytes]) -> Path:
    esc = html.escape
    verdict_class = "ok" if report.verdict == "verified" else "bad"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>flowerbed audit report</title><style>{CSS}</style></head><body>",
        "<section id='first-page'><h1>Data-residency audit report</h1>",
        f"<p id='verdict' class='{verdict_class}'><strong>Verdict: {esc(report.verdict)}</strong>",
        f"</p><p>report sha256 {esc(report.report_sha256)}</p>",
    ]
    for heading, sentences in report.summary.items():
        parts += [f"<h2>{esc(heading)}</h2>", *[f"<p>{esc(s)}</p>" for s in sentences]]
    parts += [
        "<table id='sign-off' class='facts'><tr><th>Signed (data-protection officer)</th>",
        "<td></td></tr><tr><th>Date</th><td></td></tr></table>",
        "</section><h2>The run</h2><table id='summary' class='facts'>",
        *[f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _run_lines(report)],
        "</table><h2>Problems</h2><ul id='problems'>",
        *([f"<li>{esc(p)}</li>" for p in report.problems] or ["<li>None: all checks pass.</li>"]),
        "</ul>",
    ]
    ids = ["signature", "flow-matrix", "parties", "payload-kinds", "flagged", "failed", "budgets"]
    for table_id, (title, header, rows) in zip(ids, _tables(report), strict=True):
        facts = " class='facts'" if table_id == "signature" else ""
        parts += [f"<h2>{esc(title)}</h2><table id='{table_id}'{facts}><tr>"]
        parts += [f"<th>{esc(h)}</th>" for h in header] + ["</tr>"]
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts += ["</table>"]
    for name, png in plots.items():
        data = base64.b64encode(png).decode()
        parts += [f"<p><img alt='{name}' src='data:image/png;base64,{data}'></p>"]
    parts += ["</body></html>"]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def chromium() -> str | None:
    """Headless Chromium on this machine, if any."""
    found = (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome"))
    return next((path for path in found if path), None)


def headless(browser: str, *flags: str) -> list[str]:
    """Chromium, headless, as root may run it, with no network of its own to reach for."""
    return [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        *flags,
    ]  # fmt: skip


def write_pdf(page: Path, out: Path) -> Path:
    """``page`` printed to an A4 PDF by headless Chromium, without its header and footer."""
    browser = chromium()
    if browser is None:
        raise FlowerbedError(
            "--format pdf prints the report with headless Chromium, which is not installed; "
            "install it (Debian: apt-get install chromium) or use --format html"
        )
    path = out / "report.pdf"
    with tempfile.TemporaryDirectory(prefix="flowerbed-chromium-") as profile:
        command = headless(
            browser, f"--user-data-dir={profile}", "--no-pdf-header-footer",
            f"--print-to-pdf={path}", page.resolve().as_uri(),
        )  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=PDF_TIMEOUT_S)
    if done.returncode != 0 or not path.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FlowerbedError(f"Chromium could not print {page} to PDF: {last}")
    return path


def write_pages(report: Report, out: Path, formats: tuple[str, ...]) -> list[Path]:
    """The Markdown, HTML and PDF forms ``formats`` asks for (a PDF is printed from the HTML,
    which is written beside it)."""
    wanted = set(formats)
    if not wanted & {"md", "html", "pdf"}:
        return []
    plots = {"flows": _flow_plot(report), "privacy": _privacy_plot(report)}
    if report.scores_by_round:
        plots["scores"] = _scores_plot(report)
    written = []
    if "md" in wanted:
        written.append(write_markdown(report, out, plots))
    if wanted & {"html", "pdf"}:
        page = write_html(report, out, plots)
        written += [page] if "html" in wanted else []
        if "pdf" in wanted:
            written.append(write_pdf(page, out))
    return written
