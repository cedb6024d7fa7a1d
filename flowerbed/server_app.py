"""The ServerApp: coordinates rounds with the chosen strategy, keeps the final model.

The same ServerApp serves simulation and deployment. It never sees a
site's data: the model's shape (spatial dims, channels, classes) comes from
the sites' answers to the roll call (``strategies.roll_call``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from flowerbed.audit.ledgered_grid import LedgeredGrid
from flowerbed.audit.residency import ResidencyPolicy
from flowerbed.audit.schema import app_entry, network_entry, resumed_entry
from flowerbed.catalogue import STRATEGIES
from flowerbed.config import Federation, load_federation
from flowerbed.errors import ConfigError, ModelError, RunStopped
from flowerbed.models.dp_safe import check_fits
from flowerbed.models.factory import build_model
from flowerbed.models.network_source import network_code
from flowerbed.protocol import records as R
from flowerbed.run_folder import RunFolder
from flowerbed.strategies.roll import Roll
from flowerbed.strategies.roll_call import roll_call


def coordinate(
    grid: Grid,
    federation: Federation,
    folder: RunFolder,
    resumed: ArrayRecord | None = None,
    app: str = "",
) -> None:
    """Run every planned round; record the outcome in ``folder`` whatever happens.

    Every message goes through the coordinator's ledger (``ledgers/coordinator.jsonl``).
    ``resumed`` is the checkpointed global model of a resumed run (``RunFolder.resume``):
    the rounds after ``folder.rounds_completed`` are played from it, and the sites, told
    which Flower runs this one continues, count those runs' privacy spend as this run's.
    ``app`` is the sha256 of the bundle a deployed run was submitted as, signed into the
    ledger for the report to set against the bundles each site's ledger says it approved.
    """
    check_coordinator_residency(federation)
    ledger = folder.open_ledger(federation.coordinator_country)
    ledgered = LedgeredGrid(grid, ledger, federation)
    if app:
        ledger.append(app_entry(app), sign=True)
    continues = folder.earlier_runs() if resumed is not None else []
    if continues:
        ledger.append(resumed_entry(grid.run.run_id, continues, folder.rounds_completed), sign=True)
    try:
        timeout, done = federation.run.round_timeout, folder.rounds_completed
        roll = roll_call(ledgered, federation, timeout, continues, done)
        initial = _initial_model(roll, folder, federation.run.seed)
        if resumed is not None:
            initial = _checked_checkpoint(resumed, initial)
        result = _train(ledgered, federation, folder, roll, initial, continues)
    except RunStopped as stop:
        folder.save_status(completed=False, reason=str(stop))
        raise
    finally:
        ledgered.close()
    if federation.run.strategy != "gossip":  # serverless runs have no global model
        final = result.arrays if len(result.arrays) else initial  # no round was left to play
        folder.save_model(final.to_torch_state_dict(), roll.spec)
    folder.save_status(completed=True)


def _checked_checkpoint(checkpoint: ArrayRecord, initial: ArrayRecord) -> ArrayRecord:
    """The checkpointed model, if it is one of the network this roll call settled on."""
    shapes = {name: tuple(array.shape) for name, array in checkpoint.items()}
    if shapes != {name: tuple(array.shape) for name, array in initial.items()}:
        raise RunStopped(
            "the checkpoint is not a model of the network the sites' data now needs (their "
            "images or classes changed since the run began); start a new run"
        )
    return checkpoint


def _initial_model(roll: Roll, folder: RunFolder, seed: int) -> ArrayRecord:
    """The seeded initial model of the network the roll call settled on, checked to fit the
    sites' task; the network and its source's sha256 are signed into the coordinator's
    ledger, so the report names what every site trained."""
    spec = roll.spec
    torch.manual_seed(seed)
    try:
        model = build_model(spec)
        check_fits(model, spec, roll.task)
        code = network_code(spec.name)
    except ModelError as err:
        raise RunStopped(str(err)) from None
    if folder.ledger is not None:
        entry = network_entry(spec.name, code, roll.task, list(spec.input_shape), spec.out_channels)
        folder.ledger.append(entry, sign=True)
    return ArrayRecord(model.state_dict())


def _train(
    grid: Grid,
    federation: Federation,
    folder: RunFolder,
    roll: Roll,
    initial: ArrayRecord,
    continues: list[int],
) -> Result:
    """The rounds left to play with the run's strategy, from ``initial``: the seeded initial
    model, or a resumed run's checkpoint."""
    run, spec = federation.run, roll.spec
    strategy = STRATEGIES.get(run.strategy)(federation, folder, roll)
    done = folder.rounds_completed
    if done:
        strategy.resume_after(done)
    train_config = ConfigRecord(
        {
            R.NUM_ROUNDS: run.rounds,
            R.LOCAL_EPOCHS: run.local_epochs,
            R.BATCH_SIZE: run.batch_size,
            R.LEARNING_RATE: federation.learning_rate_for(roll.task),
            R.LR_SCHEDULE: run.lr_schedule,
            R.OPTIMIZER: run.optimizer,
            R.MIXING: run.mixing,
            R.HONESTY: run.honesty,
            R.SEED: run.seed,
            **({R.CONTINUES: continues} if continues else {}),
            **spec.to_config(),
        }
    )
    return strategy.start(
        grid,
        initial,
        num_rounds=run.rounds - done,
        timeout=run.round_timeout,
        train_config=train_config,
        evaluate_config=ConfigRecord(dict(train_config)),
    )


def check_coordinator_residency(federation: Federation) -> None:
    """Server-side strategies send every site's update to the coordinator; may they?"""
    if federation.run.strategy == "gossip":
        return  # the relay only ever holds ciphertext for other sites
    policy = ResidencyPolicy(federation.residency)
    coordinator = federation.coordinator_country
    barred = sorted(
        {s.country for s in federation.sites if not policy.permits(s.country, coordinator)}
    )
    if barred:
        raise ConfigError(
            f"residency policy forbids sites in {', '.join(barred)} to send model updates to "
            f"the coordinator in {federation.coordinator_country}; use --strategy gossip, "
            "move the coordinator ([coordinator] country) or change [residency]"
        )


def make_server_app(
    federation_file: Path | None = None,
    folder: RunFolder | None = None,
    resumed: ArrayRecord | None = None,
) -> ServerApp:
    """A ServerApp for one federation.

    Without arguments (``flwr run``) it reads ``federation`` and ``out`` from the run config,
    and ``resume`` (true: go on with the run in ``out`` from its checkpoint). ``resumed`` is
    the checkpoint of a resumed simulation's ``folder``.
    """
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        out = Path(str(context.run_config.get("out", "runs/flwr")))
        app = str(context.run_config.get(R.APP, ""))  # a deployed run's bundle; none simulated
        if folder is None and context.run_config.get(R.RESUME):
            found, federation, checkpoint = RunFolder.resume(out)
            coordinate(grid, federation, found, checkpoint, app)
            return
        path = federation_file or Path(str(context.run_config[R.FEDERATION_FILE]))
        federation = load_federation(path)
        coordinate(grid, federation, folder or RunFolder.create(out, federation), resumed, app)

    return app


app = make_server_app()
