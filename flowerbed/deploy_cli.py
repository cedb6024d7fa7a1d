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
    epsilon: Annotated[float, typer.Option(help="privacy budget for a whole run")] = 8.0,
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
        privacy=_validated(PrivacySettings, enabled=not no_dp, epsilon=epsilon),
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
        f"send {folder.supernode_public_key} to the coordinator to register this site; "
        f"then: flowerbed site launch {folder.site_file} --superlink HOST:PORT "
        "--root-certificates ca.pem"
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
    approved = [*folder.config.policy.approved_apps, app.strip().lower()]
    policy = folder.config.policy
    folder.config.policy = _validated(
        SitePolicy,
        send_to=policy.send_to,
        approved_apps=sorted(set(approved)),
        network=policy.network,
    )
    folder.save()
    console.print(f"{site_file}: approved app {app.strip().lower()}")


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
) -> None:
    """Submit the training run to the federation's SuperLink and follow it to the end."""
    from flowerbed.deployment.submit import submit_run

    check_tls_flags(root_certificates, insecure)

    def submitted(run_id: int, digest: str) -> None:
        console.print(f"run {run_id} submitted (app {digest}); run folder {out}")

    def round_done(server_round: int, score: str, mean: float, failed: dict[str, str]) -> None:
        line = f"round {server_round}: mean test {score} {mean:.3f}"
        console.print(line + failed_sites(failed), highlight=False)

    submit_run(federation, superlink, root_certificates, out, submitted, round_done)
    console.print(f"[green]completed[/]: run folder {out}")
