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

from dataclasses import dataclass, field

from flwr.app import ConfigRecord
from opacus.accountants.utils import get_noise_multiplier

from flowerbed.errors import FlowerbedError
from flowerbed.privacy import rdp
from flowerbed.privacy.rdp import History

STATE_KEY = "privacy-account"
MIN_NOISE, MAX_NOISE, NOISE_BISECTIONS = 0.05, 1e4, 48  # noise 1e4 to within 1e-6 relative


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


def plan_noise_after(
    budget: float, delta: float, taken: History, sample_rate: float, steps: int
) -> float:
    """The noise multiplier that spends what ``budget`` has left after ``taken`` over
    ``steps`` more steps: a resumed run's, whose stopped round may have spent more than its
    plan (the sites trained it, the coordinator died before it used their updates).

    Bisection in log-space; the noisier end is returned, so the run never passes its
    budget. Nothing left to spend gives the largest noise tried, which the check before
    each round then refuses.
    """
    low, high = MIN_NOISE, MAX_NOISE
    for _ in range(NOISE_BISECTIONS):
        middle = (low * high) ** 0.5
        if rdp.epsilon([*taken, (middle, sample_rate, steps)], delta) > budget:
            low = middle
        else:
            high = middle
    return high


def plan_noise(budget: float, delta: float, sample_rate: float, total_steps: int) -> float:
    """The noise multiplier that spends ``budget`` over every step the run plans."""
    return float(
        get_noise_multiplier(
            target_epsilon=budget,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=total_steps,
            accountant="rdp",
        )
    )
