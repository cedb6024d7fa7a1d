"""Names of the records and keys that travel between the ServerApp and the sites.

One module, so the two ends cannot drift apart. Flower's own keys (``arrays``,
``config``, ``server-round``, ``proximal-mu``) are reused where they exist.
"""

# Records inside a message's RecordDict.
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SITE = "site"

# Gossip: the relay hands each site its inbox and whom to seal for; the site
# replies with one sealed payload per addressee and its own model's test scores.
TEST_METRICS = "test-metrics"
INBOX = "inbox"  # sender name -> sealed payload (bytes)
MIX_WEIGHTS = "mix-weights"  # sender name -> Metropolis-Hastings weight
PEER_KEYS = "peer-keys"  # site name -> X25519 public key, for senders and addressees
SEND_TO = "send-to"  # ConfigRecord {SEND_TO: [addressee names]}
SEALED = "sealed"  # addressee name -> sealed payload (bytes)
PEER_COUNTRIES = "peer-countries"  # site name -> country, for the sender's residency check
MIX_ONLY = "mix-only"  # config flag of the relay's last message: mix and score, no training
IDENTITY_QUERY = "identity"  # query message name: a site answers with its SITE record

# ConfigRecord keys the ServerApp sends.
SERVER_ROUND = "server-round"
NUM_ROUNDS = "num-rounds"
# A resumed run's: the Flower run ids of its earlier parts, whose DP steps are this run's too
CONTINUES = "continues"
ROUNDS_DONE = "rounds-done"  # ... and the rounds they completed (the roll call's)
LOCAL_EPOCHS = "local-epochs"
BATCH_SIZE = "batch-size"
LEARNING_RATE = "learning-rate"  # the peak, under a schedule
LR_SCHEDULE = "lr-schedule"  # "constant" or "cosine" over the rounds
OPTIMIZER = "optimizer"
PROXIMAL_MU = "proximal-mu"
MIXING = "mixing"
PROBE_SEED = "probe-seed"  # honesty checks: the public probe of this train instruction
PROBE = "probe"  # a reply's answer to the probe (ConfigRecord)
PROBE_DIGEST = "digest"
PROBE_SKETCH = "sketch"  # gossip: ``honesty.sketch.sketch`` of the model a site sealed
PREVIOUS_PROBE_SEED = "previous-probe-seed"  # gossip: the probe the inbox's payloads answered
PROBE_CLAIMS = "probe-claims"  # gossip: sender -> the probe answer it gave for its payload
SKETCH_CLAIMS = "sketch-claims"  # gossip: sender -> the sketch it gave of its payload
HONESTY = "honesty"  # "flag" or "exclude"
FLAGS = "flags"  # gossip: neighbour -> a code of ``honesty.reasons.NEIGHBOUR_CODES``
SEED = "seed"
MODEL = "model"
SPATIAL_DIMS = "spatial-dims"
IN_CHANNELS = "in-channels"
OUT_CHANNELS = "out-channels"
INPUT_SHAPE = "input-shape"  # one image's spatial size: what the honesty probe feeds

# The sender's signed ledger head, attached to every message (see flowerbed.audit.ledger).
LEDGER_HEAD = "ledger-head"

# Site identity a site attaches to every reply (public: it names the sender).
SITE_NAME = "name"
SITE_COUNTRY = "country"
SITE_PUBLIC_KEY = "x25519-public-key"
SITE_SAMPLE_SHAPE = "sample-shape"  # identity only: channels and spatial size of one image
SITE_CLASSES = "classes"  # identity only: how many classes its labels have
SITE_TASK = "task"  # identity only: "classification" or "segmentation"
SITE_NETWORK_CODE = "network-code"  # identity only: sha256 of its network's source file
NETWORK_QUERY = "network"  # roll-call config: the network the run will train

# MetricRecord keys: the only metrics a site declares.
NUM_EXAMPLES = "num-examples"
LOSS = "loss"
AUC = "auc"
ACCURACY = "accuracy"
DICE = "dice"  # segmentation: mean Dice over foreground classes
EPSILON = "epsilon"
EPSILON_BUDGET = "epsilon-budget"
BUDGET_EXHAUSTED = "budget-exhausted"
DISAGREEMENT = "disagreement"  # gossip: mean squared parameter distance to neighbours
REJECTED_PAYLOADS = "rejected-payloads"  # gossip: payloads that failed to open
MEMBERSHIP_AUC = "membership-auc"  # loss-threshold attack on the site's model, own data
MEMBERSHIP_TPR_1PCT = "membership-tpr-at-1pct-fpr"  # the same attack, at 1 % false positives
MEMBERSHIP_TPR_01PCT = "membership-tpr-at-0.1pct-fpr"  # and at 0.1 %
CANARY_EPSILON = "canary-epsilon"  # the one-run audit's lower bound on epsilon (canaries)
EPSILON_LIFETIME = "epsilon-lifetime"  # the site's data set's spend over every run so far
# The round's DP-SGD steps, what its epsilon depends on: parallel lists, one entry per
# (noise multiplier, sample rate) it trained at; and delta. The ledger keeps them, and
# ``audit verify`` recomputes the epsilon from them.
DP_NOISE = "dp-noise"
DP_SAMPLE_RATE = "dp-sample-rate"
DP_STEPS = "dp-steps"
DP_DELTA = "dp-delta"
DP_HISTORY = (DP_NOISE, DP_SAMPLE_RATE, DP_STEPS)

# What a site may send and accept, and nothing else (``hospital_client.egress_guard``).
DECLARED_METRICS = frozenset(
    {
        NUM_EXAMPLES,
        LOSS,
        AUC,
        ACCURACY,
        DICE,
        EPSILON,
        EPSILON_BUDGET,
        EPSILON_LIFETIME,
        BUDGET_EXHAUSTED,
        DISAGREEMENT,
        MEMBERSHIP_AUC,
        MEMBERSHIP_TPR_1PCT,
        MEMBERSHIP_TPR_01PCT,
        CANARY_EPSILON,
        REJECTED_PAYLOADS,
        DP_DELTA,
        *DP_HISTORY,
    }
)
SITE_KEYS = frozenset(
    {
        SITE_NAME,
        SITE_COUNTRY,
        SITE_PUBLIC_KEY,
        SITE_SAMPLE_SHAPE,
        SITE_CLASSES,
        SITE_TASK,
        SITE_NETWORK_CODE,
    }
)
# Records an instruction may hold: the parameters (an ArrayRecord) and config records.
INBOUND_RECORDS = (
    CONFIG,
    ARRAYS,
    INBOX,
    MIX_WEIGHTS,
    PEER_KEYS,
    PEER_COUNTRIES,
    SEND_TO,
    LEDGER_HEAD,
    PROBE_CLAIMS,
    SKETCH_CLAIMS,
)

# A site's own failure: the Error code of its one-line reason ``SITE: message``
# (``hospital_client.site_errors``); Flower's own codes are 0-8.
SITE_ERROR = 100


def site_error(site: str, message: str) -> str:
    """The reason of a site's error reply: its name, then its own one-line message."""
    return f"{site}: {message}"


def split_site_error(reason: str) -> tuple[str, str]:
    """(site, message) of a reason ``site_error`` wrote."""
    site, _, message = reason.partition(": ")
    return site, message


# Run-config key naming the federation file (``flwr run --run-config``).
FEDERATION_FILE = "federation"
APP = "app"  # run config: the sha256 of the app bundle `flowerbed run` submitted
RESUME = "resume"  # run config, non-empty: go on with the run in "out" from its checkpoint

# The roll call's config: the sha256 of the roster the coordinator runs with, which a
# site holds to the one it pinned.
ROSTER_SHA256 = "roster-sha256"
