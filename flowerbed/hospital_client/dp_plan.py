"""What DP-SGD a site's run plans and has spent, without the training stack.

The roll call prices a run with ``planned_steps`` before any network is
built, and every message's ledger entry carries ``spent``; a deployed
ClientApp is one process per message, so both are kept apart from the code
that trains (``training``, which imports Opacus and MONAI).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context

from flowerbed.config import Federation, SiteSettings
from flowerbed.privacy.accounting import STATE_KEY, PrivacyAccount, plan_noise
from flowerbed.privacy.rdp import History
from flowerbed.protocol import records as R


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch, counted as Opacus counts them; it accounts each at 1 / this.

    Opacus's Poisson loader takes ``int(1 / (1 / batches))`` steps, and its
    accountant records rate 1 / steps. Float rounding makes that one step
    fewer at a larger rate for some sizes (99 batches: 98 steps at 1/98).
    Noise planned with the plain batch count would then spend more than the
    budget, and the site would refuse its last round.
    """
    batches = -(-examples // batch_size)
    return int(1 / (1 / batches))


def spent(context: Context, federation: Federation) -> float:
    """The epsilon this site has spent in this run so far."""
    account = PrivacyAccount.from_record(context.state.get(STATE_KEY))
    return account.epsilon(federation.privacy.delta)


def planned_steps(
    federation: Federation,
    site: SiteSettings,
    train_size: int,
    config: ConfigRecord,
    taken: History = (),
) -> History:
    """The DP-SGD steps the run plans at this site, as one (noise multiplier, sample rate,
    steps): the noise that spends the run's budget over every planned step. A resumed run
    (``R.CONTINUES``) that has ``taken`` steps plans its rounds still to play, with the noise
    that spends what its budget has left after them."""
    steps = steps_per_epoch(train_size, int(config[R.BATCH_SIZE]))
    privacy, budget = federation.privacy, federation.budget_of(site)
    if R.CONTINUES in config and taken:
        left = steps * int(config[R.LOCAL_EPOCHS]) * _rounds_left(config)
        return [(plan_noise(budget, privacy.delta, 1 / steps, left, taken), 1 / steps, left)]
    total = steps * int(config[R.NUM_ROUNDS]) * int(config[R.LOCAL_EPOCHS])
    return [(plan_noise(budget, privacy.delta, 1 / steps, total), 1 / steps, total)]


def _rounds_left(config: ConfigRecord) -> int:
    """Rounds of the run still to play: from this one (a round's instruction), or after
    those a resumed run's roll call says are done."""
    rounds = int(config[R.NUM_ROUNDS])
    if R.SERVER_ROUND in config:
        return rounds - int(config[R.SERVER_ROUND]) + 1
    return rounds - int(config.get(R.ROUNDS_DONE, 0))
