"""A site's privacy spend: explicit, serialisable, and checked before it is spent.

One ``PrivacyAccount`` lives for a site's whole run. Its state is the RDP
accountant's history (noise multiplier, sample rate, steps) and it is saved
into Flower's ``context.state`` after every round, so it survives the
per-message subprocess of a deployed SuperNode exactly as Opacus's own
``state_dict`` would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.app import ConfigRecord
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from flowerbed.errors import FlowerbedError

STATE_KEY = "privacy-account"


class BudgetExhausted(FlowerbedError):
    """The next round would take a site past its epsilon budget."""

    def __init__(self, site: str, spent: float, next_round: float, budget: float) -> None:
        super().__init__(
            f"site {site} refuses to train: epsilon spent {spent:.3f}, one more round would "
            f"reach {next_round:.3f}, budget {budget:.3f}"
        )
        self.site, self.spent, self.next_round, self.budget = site, spent, next_round, budget


@dataclass
class PrivacyAccount:
    """Every DP-SGD step a site has taken, as (noise multiplier, sample rate, steps)."""

    history: list[tuple[float, float, int]] = field(default_factory=list)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0 before the first step)."""
        return _epsilon(self.history, delta)

    def epsilon_after(self, noise: float, sample_rate: float, steps: int, delta: float) -> float:
        """Epsilon if ``steps`` more steps were taken: the check before spending."""
        return _epsilon([*self.history, (noise, sample_rate, steps)], delta)

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


def _epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    if not history:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta))


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
