"""Names of the records and keys that travel between the ServerApp and the sites.

One module, so the two ends cannot drift apart. Flower's own keys (``arrays``,
``config``, ``server-round``, ``proximal-mu``) are reused where they exist.
"""

# Records inside a message's RecordDict.
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SITE = "site"

# ConfigRecord keys the ServerApp sends.
SERVER_ROUND = "server-round"
NUM_ROUNDS = "num-rounds"
LOCAL_EPOCHS = "local-epochs"
BATCH_SIZE = "batch-size"
LEARNING_RATE = "learning-rate"
PROXIMAL_MU = "proximal-mu"
SEED = "seed"
MODEL = "model"
SPATIAL_DIMS = "spatial-dims"
IN_CHANNELS = "in-channels"
OUT_CHANNELS = "out-channels"

# Site identity a site attaches to every reply (public: it names the sender).
SITE_NAME = "name"
SITE_COUNTRY = "country"

# MetricRecord keys: the only metrics a site declares.
NUM_EXAMPLES = "num-examples"
LOSS = "loss"
AUC = "auc"
ACCURACY = "accuracy"
EPSILON = "epsilon"
EPSILON_BUDGET = "epsilon-budget"
BUDGET_EXHAUSTED = "budget-exhausted"

# Run-config key naming the federation file (``flwr run --run-config``).
FEDERATION_FILE = "federation"
