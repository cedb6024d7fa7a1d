"""``flowerbed site ...``, ``flowerbed coordinator ...``, ``flowerbed run``: a real federation.

Parse, call one function in ``flowerbed.deployment``, render; errors a user
can fix are ``FlowerbedError`` lines (see ``cli.main``). What needs the
training stack or Flower's runtime is imported by the command that runs it
(see ``flowerbed.cli``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from flowerbed.config import (
    CoordinatorSettings,
    DataSettings,
    PrivacySettings,
    SiteSettings,
    load_federation,
    resolve_path,
)
from flowerbed.deployment.certificates import CertificateFiles, make_certificates
from flowerbed.errors import ConfigError
from flowerbed.hospital_client.site_folder import (
    SITE_FILE,
    SiteConfig,
    SiteFolder,
    SitePolicy,
    create_site_folder,
)
from flowerbed.terminal import check_tls_flags, console, failed_sites

site_commands = typer.Typer(
    no_args_is_help=True, help="A hospital: its site folder and its SuperNode."
)


FLAGS = {"approved_apps": "--approve", "enabled": "--no-dp"}  # field -> its flag


def _validated(model: type, **values: object) -> object:
    """Build a settings object from flags, turning a bad value into one line naming the flag."""
    try:
        return model(**values)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0])
        flag = FLAGS.get(field, "--" + field.replace("_", "-"))
        raise ConfigError(f"{flag}: {first['msg'].removeprefix('Value error, ')}") from None


@site_commands.command("init")
def site_init(
    name: Annotated[str, typer.Option(help="the site's name in the federation, e.g. charite")],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 code of the site, e.g. DE")],
    data: Annotated[str, typer.Option(help=".npz, CSV manifest, or synthetic for a trial")],
    epsilon: Annotated[
        float, typer.Option(help="privacy budget of the data set's whole lifetime, every run")
    ] = 8.0,
    run_epsilon: Annotated[
        float | None, typer.Option(help="at most this much in one run (default: the budget)")
    ] = None,
    no_dp: Annotated[bool, typer.Option("--no-dp", help="train without DP-SGD")] = False,
    coordinator_country: Annotated[
        str | None, typer.Option(help="country of the coordinator (default: the site's)")
    ] = None,
    send_to: Annotated[
        list[str] | None,
        typer.Option(help="a country that may receive this site's updates (repeat; default any)"),
    ] = None,
    approve: Annotated[
        list[str] | None, typer.Option(help="sha256 of an app bundle this site runs (repeat)")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="pixels per axis (default: the data's own; 32 manifests)")
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment", help="flips, small rotations, intensity jitter")
    ] = False,
    network: Annotated[
        str | None,
        typer.Option(help="this site's own network, package.module:function, if the run uses one"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="site folder to create (default: ./NAME)")
    ] = None,
) -> None:
    """Create a site folder: site.toml and the site's keys, readable by its owner only."""
    from flowerbed.deployment.launch import describe_site_data

    # Stored absolute: the SuperNode reads site.toml later, from wherever it runs.
    data = resolve_path(data, Path.cwd())
    settings = _validated(SiteSettings, name=name, country=country, data=data)
    config = SiteConfig(
        site=settings,
        privacy=_validated(
            PrivacySettings, enabled=not no_dp, epsilon=epsilon, run_epsilon=run_epsilon
        ),
        coordinator=_validated(
            CoordinatorSettings, country=coordinator_country or settings.country
        ),
        data=_validated(DataSettings, image_size=image_size, augment=augment),
        policy=_validated(
            SitePolicy, send_to=send_to, approved_apps=approve or [], network=network
        ),
    )
    data_summary = describe_site_data(SiteFolder(Path(), config))
    folder = create_site_folder(out or Path(name), config)
    console.print(f"site [bold]{name}[/] ({settings.country}): {data_summary}")
    console.print(f"wrote {folder.site_file} and keys in {folder.keys} (mode 0600)")
    console.print(
        f"send {folder.public_file} (name, country, public keys) and "
        f"{folder.supernode_public_key} to the coordinator; pin the roster they send back "
        f"with `flowerbed site pin {folder.site_file} roster.toml SHA256`, then: flowerbed "
        f"site launch {folder.site_file} --superlink HOST:PORT --root-certificates ca.pem"
    )


@site_commands.command("launch")
def site_launch(
    site_file: Annotated[Path, typer.Argument(help="the site's site.toml")],
    superlink: Annotated[str, typer.Option(help="the coordinator's SuperLink, HOST:PORT")],
    root_certificates: Annotated[
        Path | None, typer.Option(help="the federation's CA certificate (ca.pem)")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="no TLS: only for a trial on one machine")
    ] = False,
    port: Annotated[int, typer.Option(help="local port of the SuperNode's runtime API")] = 9094,
) -> None:
    """Check the site's config, data and the SuperLink, then run the site's SuperNode."""
    from flowerbed.deployment.launch import launch_site

    check_tls_flags(root_certificates, insecure)
    launch_site(site_file, superlink, root_certificates, port)


@site_commands.command("approve")
def site_approve(
    site_file: Annotated[Path, typer.Argument(help="the site's site.toml")],
    app: Annotated[str, typer.Argument(help="sha256 of the app bundle (`flowerbed app hash`)")],
) -> None:
    """Approve an app bundle: this site's SuperNode will run it."""
    folder = SiteFolder.load(site_file)
    policy = folder.config.policy
    approved = sorted({*policy.approved_apps, app.strip().lower()})
    # Every other field (the pinned roster included) is kept as it is.
    folder.config.policy = _validated(
        SitePolicy, **(policy.model_dump() | {"approved_apps": approved})
    )
    folder.save()
    console.print(f"{site_file}: approved app {app.strip().lower()}")


@site_commands.command("pin")
def site_pin(
    site_file: Annotated[Path, typer.Argument(help="the site's site.toml")],
    roster: Annotated[Path, typer.Argument(help="the federation's roster.toml")],
    sha256: Annotated[str, typer.Argument(help="its sha256, as the coordinator announced it")],
) -> None:
    """Pin the federation's roster: from now on this site trusts only the keys and countries
    it lists, and joins only runs of this roster."""
    from flowerbed.hospital_client.site_roster import pin_roster

    pinned = pin_roster(SiteFolder.load(site_file), roster, sha256.strip().lower())
    console.print(
        f"{site_file}: pinned roster {pinned.sha256} ({len(pinned.roster.sites)} sites, "
        f"coordinator in {pinned.roster.coordinator_country})"
    )


@site_commands.command("budget")
def site_budget(
    site: Annotated[Path, typer.Argument(help="the site folder (or its site.toml)")],
) -> None:
    """Print the privacy this site's data set spent in each run, and what remains of its
    lifetime budget, recomputed from the DP steps in its own ledger."""
    from rich.table import Table

    from flowerbed.hospital_client.lifetime import ledger_history
    from flowerbed.privacy import rdp

    folder = SiteFolder.load(site / SITE_FILE if site.is_dir() else site)
    federation = folder.federation
    delta, budget = federation.privacy.delta, federation.lifetime_budget_of(federation.sites[0])
    runs = ledger_history(folder.ledger_path)
    table = Table(title=f"{folder.config.site.name}: privacy spent (delta {delta:g})")
    for column in ("run", "DP steps", "epsilon"):
        table.add_column(column, justify="right")
    for run_id, history in runs.items():
        table.add_row(str(run_id), str(sum(s for _, _, s in history)),
                      f"{rdp.epsilon(history, delta):.3f}")  # fmt: skip
    lifetime = rdp.epsilon([row for history in runs.values() for row in history], delta)
    console.print(table)
    console.print(
        f"lifetime: epsilon {lifetime:.3f} spent of {budget:g} over {len(runs)} runs "
        f"(composed); {max(budget - lifetime, 0.0):.3f} remains",
        highlight=False,
    )


app_commands = typer.Typer(no_args_is_help=True, help="The app bundle a deployed run submits.")


@app_commands.command("hash")
def app_hash_command() -> None:
    """Print the sha256 of this flowerbed's app bundle: what a site approves."""
    from flowerbed.deployment.app_bundle import app_hash

    console.print(app_hash(), highlight=False)


coordinator_commands = typer.Typer(
    no_args_is_help=True, help="The coordinator: its certificates and its SuperLink."
)


@coordinator_commands.command("certs")
def coordinator_certs(
    host: Annotated[
        list[str], typer.Option(help="name or IP address the sites dial (repeat for more)")
    ],
    out: Annotated[Path, typer.Option(help="folder for ca.pem, server.pem and keys")],
) -> None:
    """Make the federation's CA and the SuperLink's TLS certificate."""
    files = make_certificates(out, host)
    console.print(f"wrote {files.ca} (give it to every site) and {files.server_cert}")


@coordinator_commands.command("roster")
def coordinator_roster(
    public: Annotated[list[Path], typer.Argument(help="each site's public.toml")],
    country: Annotated[str, typer.Option(help="the coordinator's country, e.g. DE")],
    out: Annotated[Path, typer.Option(help="roster file to write")] = Path("roster.toml"),
) -> None:
    """Build the federation's roster from the sites' public files; print its sha256, which
    every site pins (`flowerbed site pin`) and the federation file names."""
    from flowerbed.audit.roster import build_roster, write_roster

    coordinator = _validated(CoordinatorSettings, country=country)
    sha256 = write_roster(build_roster(public, str(coordinator.country)), out)
    console.print(f"wrote {out} ({len(public)} sites); its sha256, for every site to pin:")
    console.print(sha256, highlight=False)


@coordinator_commands.command("launch")
def coordinator_launch(
    federation: Annotated[Path, typer.Argument(help="federation TOML with each site's key")],
    certificates: Annotated[Path, typer.Option(help="folder from `flowerbed coordinator certs`")],
    address: Annotated[str, typer.Option(help="HOST:PORT the SuperLink listens on")] = (
        "0.0.0.0:9443"
    ),
    state: Annotated[Path, typer.Option(help="folder for the SuperLink's database")] = Path(
        "coordinator-state"
    ),
) -> None:
    """Run the SuperLink (TLS, only registered sites) and register the federation's sites."""
    from flowerbed.deployment.launch import launch_coordinator

    launch_coordinator(load_federation(federation), CertificateFiles(certificates), address, state)


def run_command(
    federation: Annotated[Path, typer.Argument(help="federation TOML")],
    superlink: Annotated[str, typer.Option(help="the SuperLink, HOST:PORT")] = "127.0.0.1:9443",
    root_certificates: Annotated[
        Path | None, typer.Option(help="the federation's CA certificate (ca.pem)")
    ] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="no TLS (trials only)")] = False,
    out: Annotated[Path, typer.Option(help="run folder to write")] = Path("runs/deployed"),
    resume: Annotated[
        Path | None,
        typer.Option(help="run folder of a run whose coordinator stopped: go on from there"),
    ] = None,
) -> None:
    """Submit the training run to the federation's SuperLink and follow it to the end."""
    from flowerbed.deployment.submit import submit_run

    check_tls_flags(root_certificates, insecure)
    if resume is not None:
        out = resume

    def submitted(run_id: int, digest: str) -> None:
        console.print(f"run {run_id} submitted (app {digest}); run folder {out}")

    def round_done(server_round: int, score: str, mean: float, failed: dict[str, str]) -> None:
        line = f"round {server_round}: mean test {score} {mean:.3f}"
        console.print(line + failed_sites(failed), highlight=False)

    submit_run(
        federation, superlink, root_certificates, out, submitted, round_done, resume is not None
    )
    console.print(f"[green]completed[/]: run folder {out}")
