"""User-facing errors.

Every error a user can cause by what they typed or pointed us at derives from
``FlowerbedError``; its message is one line saying what is wrong and how to
fix it. The CLI prints it in red and exits non-zero, with no traceback.
"""


class FlowerbedError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(FlowerbedError):
    """A federation or site configuration value is invalid."""


class DataError(FlowerbedError):
    """A dataset file is missing, unreadable or has the wrong shape."""


class ModelError(FlowerbedError):
    """A network cannot be built or cannot be made safe for DP-SGD."""


class TrainingDiverged(FlowerbedError):
    """A site's training loss became NaN or infinite: it stops the round, sending nothing."""


class RunStopped(FlowerbedError):
    """A run ended before its planned rounds (e.g. no site could afford to train)."""


class SiteRefused(FlowerbedError):
    """A site refused an instruction: nothing is sent, the refusal is signed into its ledger.

    The egress guard's refusals, an instruction that contradicts the site's
    pinned roster, a run its lifetime privacy budget cannot pay for.
    """
