"""The ``flowerbed`` command: parse, call one function, render.

Errors a user can fix print one red line and exit 1, with no traceback.
The training stack (torch, MONAI, Opacus, Flower's simulation) is imported
by the commands that train, when they run: an auditor's ``flowerbed audit
verify`` needs none of it.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowerbed.audit.report import DEFAULT_FORMATS, FORMATS, check_report, write_reports
from flowerbed.audit.verify import verify_run
from flowerbed.catalogue import MODELS, PARTITIONERS, READERS, STRATEGIES, TOPOLOGIES
from flowerbed.config import Federation, default_sites, load_federation
from flowerbed.deploy_cli import app_commands, coordinator_commands, run_command, site_commands
from flowerbed.errors import FlowerbedError
from flowerbed.strategies.observer import SiteRow
from flowerbed.terminal import console, failed_sites

if TYPE_CHECKING:
    from flowerbed.protocol.model_spec import ModelSpec
    from flowerbed.run_folder import RunFolder

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Federated medical imaging across hospitals: patient data never leaves its country.",
)

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@app.callback()
def _root() -> None:
    """flowerbed: federated MONAI training with DP-SGD on Flower."""


@app.command()
def simulate(
    federation: Annotated[
        Path | None, typer.Argument(help="federation TOML; default: 4 hospitals, synthetic data")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help=f"{READERS.choices()} (a MedMNIST .npz, a CSV manifest)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"{MODELS.choices()}, or your own package.module:function (default: "
            "small-cnn-dp under DP, small-cnn without, unet for segmentation)"
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help=STRATEGIES.choices()),
    ] = None,
    topology: Annotated[
        str | None,
        typer.Option(help=f"gossip graph: {TOPOLOGIES.choices()}, or an edge-list file"),
    ] = None,
    degree: Annotated[int | None, typer.Option(help="neighbours per site (random-regular)")] = None,
    rounds: Annotated[int | None, typer.Option(help="federated rounds")] = None,
    local_epochs: Annotated[int | None, typer.Option(help="local epochs per round")] = None,
    epsilon: Annotated[
        float | None, typer.Option(help="per-site epsilon budget for the run")
    ] = None,
    no_dp: Annotated[bool, typer.Option("--no-dp", help="train without DP-SGD (explicit)")] = False,
    seed: Annotated[int | None, typer.Option(help="seed for data split, init and training")] = None,
    sites: Annotated[int | None, typer.Option(help="split the data across N default sites")] = None,
    partition: Annotated[str | None, typer.Option(help=PARTITIONERS.choices())] = None,
    alpha: Annotated[float | None, typer.Option(help="skew for dirichlet / quantity")] = None,
    image_size: Annotated[
        int | None,
        typer.Option(help="pixels per axis images are brought to (default: the data's own)"),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help="training-time flips, rotations, jitter"),
    ] = None,
    out: Annotated[Path, typer.Option(help="run folder to write")] = Path("runs/latest"),
    resume: Annotated[
        Path | None,
        typer.Option(help="run folder of a run that stopped: go on from its last round"),
    ] = None,
) -> None:
    """Train a federation in Flower's simulation engine and write the run folder."""
    if resume is not None:
        given = {name for name, value in locals().items() if value not in (None, False)}
        others = sorted(given - {"resume", "out"})
        if others or out != Path("runs/latest"):
            raise FlowerbedError(
                "--resume goes on with the run as it was configured (its config.toml); "
                f"leave out {', '.join('--' + o.replace('_', '-') for o in others) or '--out'}"
            )
        from flowerbed.run_folder import resumable  # torch: only for a run to resume

        federation_of_run, _ = resumable(resume.resolve())  # one line if it cannot be
        _run_with_progress(federation_of_run, resume, resume=True)
        return
    if no_dp and epsilon is not None:
        raise FlowerbedError("--epsilon and --no-dp contradict each other; pass one of them")
    overrides: dict[str, Any] = {
        "run": _given(
            model=model,
            strategy=strategy,
            topology=topology,
            degree=degree,
            rounds=rounds,
            local_epochs=local_epochs,
            seed=seed,
        ),
        "data": _given(
            source=data, partition=partition, alpha=alpha, image_size=image_size, augment=augment
        ),
        "privacy": _given(epsilon=epsilon, enabled=False if no_dp else None),
    }
    if sites is not None:
        overrides["sites"] = default_sites(sites)
    resolved = load_federation(federation, overrides)
    _run_with_progress(resolved, out)


app.add_typer(site_commands, name="site")
app.add_typer(coordinator_commands, name="coordinator")
app.add_typer(app_commands, name="app")
app.command("run")(run_command)


audit = typer.Typer(no_args_is_help=True, help="Verify a run's ledgers and report on them.")
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(
    run: Annotated[Path, typer.Argument(help="run folder with ledgers/")],
    report: Annotated[
        Path | None,
        typer.Option("--report", help="a report.json to check against the ledgers"),
    ] = None,
) -> None:
    """Exit 0 only if every ledger is intact and consistent, transfers matched, policy kept;
    with --report, and that report is the one the ledgers give (unedited)."""
    verdict = verify_run(run)
    problems = [str(p) for p in verdict.problems]
    if report is not None:
        problems += check_report(run, report)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}", highlight=False)
    parties = len(verdict.ledgers)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/] in {parties} ledgers of {run}")
        raise typer.Exit(1)
    entries = sum(len(ledger.entries) for ledger in verdict.ledgers.values())
    console.print(
        f"[green]verified[/]: {parties} ledgers, {entries} entries: chains intact, transfers "
        "matched, residency policy and privacy budgets kept"
        + (f"; {report} is the report they give" if report is not None else "")
    )


@audit.command("report")
def audit_report(
    run: Annotated[Path, typer.Argument(help="run folder with ledgers/")],
    format: Annotated[
        list[str] | None,
        typer.Option("--format", help="html, md, json or pdf (repeatable; pdf: A4, Chromium)"),
    ] = None,
) -> None:
    """Write report.html, report.md and report.json into the run folder (or the --format
    chosen; pdf prints the HTML to A4 with headless Chromium)."""
    formats = tuple(format or DEFAULT_FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise FlowerbedError(f"--format {unknown[0]} is not one of {', '.join(FORMATS)}")
    report, written = write_reports(run, formats)
    console.print(f"verdict: {report.verdict}; wrote {', '.join(str(p) for p in written)}")
    if report.problems:
        raise typer.Exit(1)


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _run_with_progress(federation: Federation, out: Path, resume: bool = False) -> None:
    from flowerbed.simulation import simulate as run_simulation

    run = federation.run
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bar = progress.add_task("starting Flower simulation", total=run.rounds)

    def on_round(server_round: int, rows: list[SiteRow]) -> None:
        progress.console.print(_round_line(server_round, rows))
        progress.update(
            bar, completed=server_round, description=f"round {server_round}/{run.rounds}"
        )

    # The header and bar start once the inputs are checked, so an input error stands alone.
    with ExitStack() as started:

        def on_start(spec: ModelSpec, task: str) -> None:
            console.print(_header(federation, spec, task, out))
            started.enter_context(progress)

        folder = run_simulation(
            federation, out, on_round=on_round, on_start=on_start, resume=resume
        )
    console.print(_site_table(federation, folder))
    for line in _failure_lines(folder):
        console.print(line, highlight=False)
    verdict = json.loads((out / "report.json").read_text())["verdict"]
    console.print(f"audit: ledgers {verdict}; report in {out / 'report.html'}")
    if run.strategy == "gossip":
        console.print(
            f"run folder: {out} (config.toml, metrics.csv, consensus.csv, ledgers/, reports; "
            "no global model: each site's own model is in sites/<site>/model.pt)"
        )
    else:
        console.print(f"run folder: {out} (config.toml, metrics.csv, model.pt, ledgers/, reports)")


def _header(federation: Federation, spec: ModelSpec, task: str, out: Path) -> str:
    """The run's first line: strategy, sites, task, network, image size, rounds, privacy."""
    run = federation.run
    dp = (
        f"DP-SGD, epsilon {federation.privacy.epsilon:g} per site"
        if federation.privacy.enabled
        else "no DP"
    )
    size = "x".join(str(side) for side in spec.input_shape)
    return (
        f"[bold]flowerbed[/] {run.strategy} · {len(federation.sites)} sites in "
        f"{len({s.country for s in federation.sites})} countries · {task} of {size} "
        f"{spec.spatial_dims}D images · {spec.name} · {run.rounds} rounds · {dp} → {out}"
    )


def _mean(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else float("nan")


def _is_segmentation(rows: list[SiteRow]) -> bool:
    return any(not math.isnan(row.dice) for row in rows)


def _round_line(server_round: int, rows: list[SiteRow]) -> str:
    tested = [r for r in rows if r.split == "test"]
    if _is_segmentation(tested):
        score = f"mean test Dice {_mean([r.dice for r in tested]):.3f}"
    else:
        score = f"mean test AUC {_mean([r.auc for r in tested]):.3f}"
    spent = max((r.epsilon for r in rows if not math.isnan(r.epsilon)), default=0.0)
    line = f"round {server_round}: {score}, max epsilon spent {spent:.2f}"
    gaps = [r.disagreement for r in tested if not math.isnan(r.disagreement)]
    if gaps:
        line += f", mean disagreement with neighbours {sum(gaps) / len(gaps):.2e}"
    refused = [r.site for r in rows if r.status == "refused"]
    if refused:
        line += f" [yellow]· budget spent, did not train: {', '.join(refused)}[/]"
    return line + failed_sites({r.site: r.error for r in rows if r.status == "failed"})


def _site_table(federation: Federation, folder: RunFolder) -> Table:
    table = Table(title="Sites after the last round (test split)")
    segmentation = _is_segmentation(list(folder.latest.values()))
    score_columns = ("Dice", "voxel accuracy") if segmentation else ("AUC", "accuracy")
    for column in ("site", "country", "train examples", *score_columns, "epsilon spent"):
        table.add_column(column, justify="left" if column in ("site", "country") else "right")
    for site in federation.sites:
        trained = folder.latest.get((site.name, "train"))
        tested = folder.latest.get((site.name, "test"))
        if tested is None or tested.status == "failed":
            table.add_row(site.name, site.country, "-", "-", "-", "-")
            continue
        examples = str(trained.num_examples) if trained and trained.status == "ok" else "-"
        epsilon = f"{tested.epsilon:.2f}" if federation.privacy.enabled else "no DP"
        score = tested.dice if segmentation else tested.auc
        table.add_row(
            site.name, site.country, examples, f"{score:.3f}", f"{tested.accuracy:.3f}", epsilon
        )
    return table


def _failure_lines(folder: RunFolder) -> list[str]:
    """One line per site that failed a round or went missing: its last failure, and how many."""
    by_site: dict[str, list[SiteRow]] = {}
    for row in folder.failed_rows:
        by_site.setdefault(row.site, []).append(row)
    lines = []
    for site, rows in by_site.items():
        last = rows[-1]
        times = f" ({len(rows)} failures in all)" if len(rows) > 1 else ""
        lines.append(
            f"[yellow]site {site} failed round {last.round} ({last.split}):[/] "
            f"{escape(last.error)}{times}"
        )
    return lines


def main() -> None:
    """Console entry point: user errors become one red line and exit code 1."""
    try:
        app()
    except FlowerbedError as err:
        console.print(f"[red]error:[/] {err}", highlight=False)
        raise SystemExit(1) from None
