"""An empirical lower bound on epsilon from one training run (Steinke, Nasr, Jagielski 2023).

Each of ``m`` canaries was trained on with probability 1/2, independently
(``datasets.canaries``). The auditor scores each canary by its loss under
the trained model, guesses "trained on" for the ``r/2`` lowest losses and
"left out" for the ``r/2`` highest, abstaining on the rest. If training was
(epsilon, delta)-DP, the number of right guesses is at most a
Binomial(r, e^eps / (1 + e^eps)) in distribution, up to a delta term
(the paper's Theorem 3.1 and Proposition 5.2). The bound is the largest
epsilon whose p-value for the guesses made is still below 1 - confidence:
the data refute every smaller epsilon at that confidence. The guesses are
tried at a few abstention levels, and the confidence is split among them
(Bonferroni), so choosing the best one keeps the bound valid.

A lower bound under DP is far below the accountant's epsilon (a few
hundred canaries cannot show more than a few units); the point is the
other direction: a bound above the accountant's epsilon means the
accounting, or the training, is wrong.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
GUESS_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # of the canaries, guessed; the rest abstained on
MAX_EPSILON = 100.0


def epsilon_lower_bound(
    losses: np.ndarray, members: np.ndarray, delta: float, confidence: float = CONFIDENCE
) -> float:
    """The largest epsilon the canaries' ``losses`` (and which were ``members``) refute at
    ``confidence``; 0 when they refute none, NaN without canaries."""
    m = len(losses)
    if m == 0:
        return float("nan")
    order = np.argsort(losses, kind="stable")  # lowest loss first: most likely trained on
    level = (1 - confidence) / len(GUESS_FRACTIONS)
    best = 0.0
    for fraction in GUESS_FRACTIONS:
        half = max(1, int(m * fraction) // 2)
        guessed_in, guessed_out = order[:half], order[m - half :]
        right = int(members[guessed_in].sum()) + int((~members[guessed_out]).sum())
        best = max(best, _refuted_epsilon(m, 2 * half, right, delta, level))
    return best


def _refuted_epsilon(m: int, r: int, v: int, delta: float, level: float) -> float:
    """The largest epsilon whose p-value for ``v`` right of ``r`` guesses is below ``level``."""
    if _p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    low, high = 0.0, MAX_EPSILON
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _p_value(m, r, v, middle, delta) < level else (low, middle)
    return low


def _p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least ``v`` right of ``r`` guesses] under (epsilon, delta)-DP, over ``m`` canaries:
    the binomial tail plus the paper's delta term (its Algorithm 2)."""
    q = 1 / (1 + math.exp(-epsilon))
    pmf = [_binomial_pmf(k, r, q) for k in range(r + 1)]
    tail = sum(pmf[v:])
    alpha, below = 0.0, 0.0
    for i in range(1, v + 1):
        below += pmf[v - i]
        alpha = max(alpha, below / i)
    return min(1.0, tail + alpha * delta * 2 * m)


def _binomial_pmf(k: int, n: int, q: float) -> float:
    if q >= 1.0:
        return 1.0 if k == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(q) + (n - k) * math.log1p(-q))
