"""The audit report: its content, its forms, and the HTML as a real browser renders it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from flowerbed.audit.report import write_reports


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


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("FLOWERBED_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (CI installs it)")
    return found


def rendered(page) -> str:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
    result = subprocess.run(
        [*command, page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout


def test_html_report_renders_in_headless_chromium_with_matrix_budgets_and_verdict(run):
    write_reports(run, ("html",))
    dom = rendered(run / "report.html")
    assert "Verdict: verified" in dom
    flow = dom.split('id="flow-matrix"')[1].split("</table>")[0]
    assert "<th>DE</th>" in flow and "<th>FR</th>" in flow
    budgets = dom.split('id="budgets"')[1].split("</table>")[0]
    assert all(site in budgets for site in ("berlin", "paris", "lyon")) and ">8<" in budgets
    assert dom.count('src="data:image/png;base64,') == 2  # plots inline: readable offline


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
