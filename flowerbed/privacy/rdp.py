"""Epsilon of a DP-SGD history by Opacus's own RDP analysis, on a machine without torch.

A site's history is its (noise multiplier, sample rate, steps) as it trained;
the site accounts with this function and the auditor recomputes with it
from the ledger, so the two can differ only if the ledger does. Opacus's
package imports torch on import, which an auditor's machine need not have;
its analysis module (``opacus/accountants/analysis/rdp.py``) needs only
numpy and scipy, so it is loaded from its file. The orders and the
composition are ``RDPAccountant.get_privacy_spent``'s.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from flowerbed.errors import FlowerbedError

History = list[tuple[float, float, int]]  # (noise multiplier, sample rate, steps)

# opacus.accountants.RDPAccountant.DEFAULT_ALPHAS
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


@lru_cache(maxsize=1)
def _analysis() -> ModuleType:
    spec = importlib.util.find_spec("opacus")
    if spec is None or not spec.submodule_search_locations:
        raise FlowerbedError("opacus is not installed; install flowerbed with its dependencies")
    path = Path(spec.submodule_search_locations[0]) / "accountants" / "analysis" / "rdp.py"
    module_spec = importlib.util.spec_from_file_location("flowerbed_opacus_rdp_analysis", path)
    if module_spec is None or module_spec.loader is None:
        raise FlowerbedError(f"{path}: Opacus's RDP analysis is missing; reinstall opacus")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def epsilon(history: History, delta: float) -> float:
    """Epsilon at ``delta`` after every step of ``history`` (0 before the first)."""
    if not history:
        return 0.0
    analysis = _analysis()
    rdp = sum(
        analysis.compute_rdp(q=rate, noise_multiplier=noise, steps=steps, orders=ALPHAS)
        for noise, rate, steps in history
    )
    spent, _ = analysis.get_privacy_spent(orders=ALPHAS, rdp=rdp, delta=delta)
    return float(spent)
