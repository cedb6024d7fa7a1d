"""The audit report: its content, its forms, and the HTML as a real browser renders it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unicodedata

import numpy as np
import pypdf
import pytest
from conftest import AUDIT_SITES, _set_task_identity, flowerbed, run_in_process
from matplotlib import image as mpimg

from flowerbed.audit import report_pages
from flowerbed.audit.report import check_report, signed_body, write_reports
from flowerbed.audit.report_pages import headless
from flowerbed.config import COORDINATOR, load_federation

A4_POINTS = (595, 842)
A4_PIXELS = (794, 1123)  # at 96 px per inch: what a page's width holds on screen


@pytest.fixture
def run(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs["gossip"][0], copy)
    return copy


def test_report_json_holds_the_flows_budgets_and_verdict(run):
    _, written = write_reports(run)
    assert sorted(p.name for p in written) == ["report.html", "report.json", "report.md"]
    data = json.loads((run / "report.json").read_text())
    assert data["verdict"] == "verified" and data["problems"] == []
    # berlin (DE) gossips with paris and lyon (FR) on the complete graph; paris and lyon
    # with each other. Two rounds, one sealed payload per neighbour per round.
    assert set(data["flows"]["DE"]) == {"FR"}
    assert set(data["flows"]["FR"]) == {"DE", "FR"}
    assert data["budgets"] == {"berlin": 8.0, "paris": 8.0, "lyon": 8.0}
    assert sorted(data["privacy"]["berlin"]) == ["1", "2"]
    # A simulated site's data set lives for one run: its lifetime spend is the run's.
    assert data["lifetime_budgets"] == data["budgets"]
    for site, spent in data["privacy"].items():
        assert data["lifetime"][site] == pytest.approx(max(spent.values()))
    kinds = data["payload_kinds"]["berlin"]
    declared = {"sealed parameters", "metrics", "identity", "ledger heads", "probe answer"}
    assert set(kinds) <= declared
    assert "parameters" not in kinds  # gossip: nothing readable left the site


def test_only_the_chosen_format_is_written(run):
    _, written = write_reports(run, ("md",))
    assert [p.name for p in written] == ["report.md"]
    assert (run / "report_flows.png").is_file() and not (run / "report.html").exists()


def ledger_entries(run) -> dict[str, list[dict]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in (run / "ledgers").glob("*.jsonl")
    }


def test_the_first_page_says_in_words_what_the_ledgers_show(run):
    report, _ = write_reports(run, ("json",))
    summary, ledgers = report.summary, ledger_entries(run)
    sites = [name for name in ledgers if name != COORDINATOR]
    # Counted here from the ledger files: each site's spend is the largest epsilon its
    # replies record; a payload item is a record a reply carried, or a signed head.
    for site in sites:
        out = [e for e in ledgers[site] if e.get("direction") == "out" and "bytes" in e]
        spent = max(e["epsilon"] for e in out if e.get("epsilon") is not None)
        assert (
            f"{site}: epsilon {spent:.2f} of its run budget 8; over its data set's lifetime "
            in (" ".join(summary["Privacy spent"]))
        )
    items = sum(
        len(e.get("carries", [])) + ("signature" in e)
        for site in sites for e in ledgers[site] if e.get("direction") == "out" and "bytes" in e
    )  # fmt: skip
    patient = summary["Patient data that left any site"]
    assert patient[0].startswith("Patient images, labels and identifiers that left any site: none")
    assert f"over the {items} payload items" in patient[0]
    assert "model parameters sealed for one other site" in patient[0]
    # berlin (DE) seals for paris and lyon (FR); they seal for each other and for berlin.
    assert summary["Where each country's model updates went"] == [
        "DE: model updates went to FR; the policy does not restrict it; within the policy.",
        "FR: model updates went to DE, FR; the policy does not restrict it; within the policy.",
    ]
    heads = report.signature["ledger_heads"]
    for party, entries in ledgers.items():
        last = [e for e in entries if "signature" in e][-1]
        assert heads[party] == {k: last[k] for k in ("index", "hash", "signature")}
    times = sorted(e["time"] for e in ledgers[COORDINATOR])
    assert (report.signature["started"], report.signature["ended"]) == (times[0], times[-1])
    assert report.signature["app_sha256"] is None  # a simulation submits no app bundle
    assert summary["Problems verify found"][0].startswith("None")


def test_verify_report_catches_an_edited_report(run, monkeypatch, capsys):
    write_reports(run, ("json",))
    path = run / "report.json"
    assert check_report(run, path) == []
    code, said = flowerbed(monkeypatch, capsys, "audit", "verify", str(run), "--report", str(path))
    assert code == 0 and "is the report they give" in said
    data = json.loads(path.read_text())
    spend = data["summary"]["Privacy spent"]
    spend[0] = f"{spend[0].split(':')[0]}: epsilon 2.00 of its run budget 8: within budget."
    path.write_text(json.dumps(data))
    problems = check_report(run, path)
    assert len(problems) == 2 and "was edited" in problems[0] and "summary" in problems[1]
    # An editor who recomputes the report's own hash is caught by the ledgers all the same.
    from flowerbed.audit.report import _sha256

    data["report_sha256"] = _sha256(signed_body(data))
    path.write_text(json.dumps(data))
    assert check_report(run, path) == [
        f"{path} differs from the report its ledgers give in: summary"
    ]
    code, said = flowerbed(monkeypatch, capsys, "audit", "verify", str(run), "--report", str(path))
    assert code == 1 and "differs from the report its ledgers give in: summary" in said


def test_the_canaries_bound_is_reported_beside_the_accountants_epsilon(tmp_path, monkeypatch):
    _set_task_identity(monkeypatch)
    federation = load_federation(
        None,
        {"run": {"rounds": 1}, "privacy": {"canaries": 32}, "sites": AUDIT_SITES},
    )
    run, _ = run_in_process(tmp_path, federation)
    report, _ = write_reports(run, ("json",))
    for site, leak in report.leak.items():
        accountant = max(report.privacy[site].values())
        assert 0 <= leak["canary_epsilon"] < accountant  # a lower bound, under DP
        assert 0 <= leak["tpr_at_01pct_fpr"] <= leak["tpr_at_1pct_fpr"] <= 1
    leak_lines = " ".join(report.summary["Leak measured"])
    assert "its canaries show epsilon of at least" in leak_lines and "No canaries" not in leak_lines


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("FLOWERBED_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (CI installs it)")
    return found


def rendered(page, *flags: str) -> str:
    command = headless(chromium(), "--dump-dom", *flags, page.as_uri())
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


# Injected into a copy of the page: every element that reaches past the page's width.
OVERFLOW = (
    "<script>const w = document.documentElement.clientWidth;"
    "document.body.dataset.overflow = [...document.querySelectorAll('body *')]"
    ".filter(e => e.getBoundingClientRect().right > w + 1)"
    ".map(e => e.tagName + '#' + e.id).join(',') || 'none';</script></body>"
)


@pytest.mark.slow  # starts a process
def test_the_report_fits_an_a4_page_in_chromium_and_is_not_blank(run, tmp_path):
    write_reports(run, ("html",))
    probe = run / "probe.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", OVERFLOW))
    dom = rendered(probe, f"--window-size={A4_PIXELS[0]},{A4_PIXELS[1]}")
    assert 'data-overflow="none"' in dom, dom.split("data-overflow=")[1][:300]
    shot = tmp_path / "shot.png"
    command = headless(
        chromium(), f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
        f"--window-size={A4_PIXELS[0]},{A4_PIXELS[1]}", f"--screenshot={shot}",
        (run / "report.html").as_uri(),
    )  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    pixels = mpimg.imread(shot)[..., :3]
    inked = (pixels.min(axis=2) < 0.8).mean()  # share of pixels that are not near white
    assert 0.02 < inked < 0.6 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def page_text(page) -> str:
    """A PDF page's words, ligatures (fi, fl) as their letters, one space apart."""
    return " ".join(unicodedata.normalize("NFKC", page.extract_text()).split())


@pytest.mark.slow  # starts a process
def test_the_pdf_is_a4_with_the_plain_language_page_first(run, monkeypatch, capsys):
    chromium()
    code, said = flowerbed(monkeypatch, capsys, "audit", "report", str(run), "--format", "pdf")
    assert code == 0 and "report.pdf" in said
    pages = pypdf.PdfReader(run / "report.pdf").pages
    assert len(pages) >= 3
    assert all(tuple(round(float(side)) for side in p.mediabox[2:]) == A4_POINTS for p in pages)
    first = page_text(pages[0])
    assert "Verdict: verified" in first
    assert "left any site: none" in first and "Privacy spent" in first and "Signed" in first
    assert "Country flow matrix" not in first  # the evidence begins on the next page
    rest = " ".join(page_text(p) for p in pages[1:])
    assert "Country flow matrix" in rest


@pytest.mark.slow  # starts a process
def test_html_report_renders_in_headless_chromium_with_matrix_budgets_and_verdict(run):
    write_reports(run, ("html",))
    dom = rendered(run / "report.html")
    assert "Verdict: verified" in dom
    flow = dom.split('id="flow-matrix"')[1].split("</table>")[0]
    assert "<th>DE</th>" in flow and "<th>FR</th>" in flow
    budgets = dom.split('id="budgets"')[1].split("</table>")[0]
    assert all(site in budgets for site in ("berlin", "paris", "lyon")) and ">8<" in budgets
    # plots inline, readable offline: flows, privacy, test scores
    assert dom.count('src="data:image/png;base64,') == 3


@pytest.mark.slow  # starts a process
def test_a_failed_verification_shows_in_the_rendered_report(run):
    ledger = run / "ledgers" / "paris.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join(lines[:3] + lines[4:]))
    report, _ = write_reports(run, ("html",))
    dom = rendered(run / "report.html")
    assert "Verdict: FAILED" in dom and "paris entry 3" in dom
    assert report.problems


def test_server_side_flows_show_updates_to_the_coordinator_and_the_global_model_back(runs):
    report, _ = write_reports(runs["fedavg"][0], ("json",))
    # berlin (DE) and paris, lyon (FR) send updates to the coordinator in DE (the
    # first site's country); the coordinator sends the global model to all three.
    assert set(report.flows["FR"]) == {"DE"}
    assert set(report.flows["DE"]) == {"DE", "FR"}
    assert report.flows["DE"]["FR"] > 0


def test_a_pdf_without_chromium_is_one_clear_line(run, monkeypatch, capsys):
    monkeypatch.setattr(report_pages, "chromium", lambda: None)
    code, said = flowerbed(monkeypatch, capsys, "audit", "report", str(run), "--format", "pdf")
    assert code == 1 and "Traceback" not in said
    assert "headless Chromium, which is not installed" in said and "--format html" in said
