"""A site's privacy spend: explicit, serialisable, and checked before it is spent.

One ``PrivacyAccount`` lives for a site's whole run. Its state is the RDP
accountant's history (noise multiplier, sample rate, steps) and it is saved
into Flower's ``context.state`` after every round, so it survives the
per-message subprocess of a deployed SuperNode exactly as Opacus's own
``state_dict`` would. Earlier runs' steps come from the site's ledger
(``hospital_client.lifetime``); epsilon is Opacus's RDP analysis of them
all (``privacy.rdp``), the function ``audit verify`` recomputes with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flwr.app import ConfigRecord

from flowerbed.errors import FlowerbedError
from flowerbed.privacy import rdp
from flowerbed.privacy.rdp import History

STATE_KEY = "privacy-account"
MAX_NOISE = 1e4  # a noise multiplier no run plans: the budget has nothing left
EPSILON_TOLERANCE = 0.01  # opacus.accountants.utils.get_noise_multiplier's default


class BudgetExhausted(FlowerbedError):
    """The next round would take a site past its epsilon budget (the run's or the lifetime's)."""

    def __init__(
        self, site: str, spent: float, next_round: float, budget: float, of: str = "run"
    ) -> None:
        super().__init__(
            f"site {site} refuses to train: {of} epsilon spent {spent:.3f}, one more round "
            f"would reach {next_round:.3f}, {of} budget {budget:.3f}"
        )
        self.site, self.spent, self.next_round, self.budget = site, spent, next_round, budget


@dataclass
class PrivacyAccount:
    """Every DP-SGD step a site has taken, as (noise multiplier, sample rate, steps)."""

    history: History = field(default_factory=list)

    def epsilon(self, delta: float, before: History = ()) -> float:
        """Epsilon spent so far at ``delta`` (0 before the first step), composed after the
        steps of ``before`` (the site's earlier runs) if given."""
        return rdp.epsilon([*before, *self.history], delta)

    def epsilon_after(
        self, noise: float, sample_rate: float, steps: int, delta: float, before: History = ()
    ) -> float:
        """Epsilon if ``steps`` more steps were taken: the check before spending."""
        return rdp.epsilon([*before, *self.history, (noise, sample_rate, steps)], delta)

    def since(self, earlier: PrivacyAccount) -> History:
        """The steps taken since ``earlier``, a copy of this account before them.

        ``record`` only appends or adds to the last entry, so the difference is
        the tail, less what ``earlier``'s last entry already counted.
        """
        rows = [list(row) for row in self.history]
        for index, (_, _, steps) in enumerate(earlier.history):
            rows[index][2] -= steps
        return [(float(n), float(q), int(s)) for n, q, s in rows if s > 0]

    def record(self, noise: float, sample_rate: float, steps: int) -> None:
        """Add ``steps``; merged into the last entry when noise and rate match.

        As Opacus's own ``RDPAccountant.step`` does: RDP composes additively
        in steps, so the merge spends exactly the same, and epsilon costs one
        RDP evaluation per distinct (noise, rate), not one per round played.
        """
        if self.history and self.history[-1][:2] == (noise, sample_rate):
            self.history[-1] = (noise, sample_rate, self.history[-1][2] + steps)
        else:
            self.history.append((noise, sample_rate, steps))

    def to_record(self) -> ConfigRecord:
        noise, rates, steps = zip(*self.history, strict=True) if self.history else ((), (), ())
        return ConfigRecord(
            {"noise": list(noise), "sample-rate": list(rates), "steps": list(steps)}
        )

    @classmethod
    def from_record(cls, record: ConfigRecord | None) -> PrivacyAccount:
        if record is None:
            return cls()
        rows = zip(record["noise"], record["sample-rate"], record["steps"], strict=True)
        return cls([(float(n), float(q), int(s)) for n, q, s in rows])


def plan_noise(
    budget: float, delta: float, sample_rate: float, steps: int, taken: History = ()
) -> float:
    """The noise multiplier that spends ``budget`` over ``steps`` more steps after
    ``taken`` (a resumed run's earlier steps: its stopped round may have spent more than
    its plan, as the sites trained it and the coordinator died before it used them).

    Opacus's ``get_noise_multiplier`` search (double the noise until the run fits, then
    bisect until it spends within ``EPSILON_TOLERANCE`` of the budget, keeping the noisier
    end), on ``privacy.rdp``: the same noise, without importing Opacus's training code into
    a roll call. Nothing left to spend gives ``MAX_NOISE``, which the check before each
    round then refuses.
    """

    def epsilon(noise: float) -> float:
        return rdp.epsilon([*taken, (noise, sample_rate, steps)], delta)

    low, high = 0.0, 10.0
    spends = math.inf
    while spends > budget:
        high *= 2
        if high >= MAX_NOISE:
            return MAX_NOISE
        spends = epsilon(high)
    while budget - spends > EPSILON_TOLERANCE:
        middle = (low + high) / 2
        at_middle = epsilon(middle)
        if at_middle < budget:
            high, spends = middle, at_middle
        else:
            low = middle
    return high
