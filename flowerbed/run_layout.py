"""Where a run folder keeps what: the names its writers and its readers (the auditor) share.

Layout::

    RUN_DIR/config.toml     the federation as resolved (file + flags)
    RUN_DIR/metrics.csv     round,site,country,split,num_examples,loss,auc,accuracy,epsilon,...
                            (a site that failed a round has a row with status "failed"
                            and its error)
    RUN_DIR/model.pt        final global model: state dict and the spec to rebuild it
    RUN_DIR/checkpoint.pt   server-side runs: the global model after the last completed
                            round, and that round (what ``--resume`` continues from)
    RUN_DIR/coordinator.key the coordinator's Ed25519 key of this run (mode 0600), so a
                            resumed run signs on in the same ledger chain
    RUN_DIR/status.json     completed, or stopped and why; each site's failures
    RUN_DIR/flower.log      simulation: Flower's log and the sites' tracebacks
    RUN_DIR/ledgers/        one ledger per party: <site>.jsonl and coordinator.jsonl
    RUN_DIR/roster.toml     the federation's roster the sites pinned (simulation: its own)
    RUN_DIR/sites/          simulation: each site's keys and public.toml, <site>/keys/;
                            gossip: its own model, <site>/model.pt
"""

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
STATUS_FILE = "status.json"
LOG_FILE = "flower.log"
LEDGERS_DIR = "ledgers"
SITES_DIR = "sites"
ROSTER_FILE = "roster.toml"
CHECKPOINT_FILE = "checkpoint.pt"
COORDINATOR_KEY_FILE = "coordinator.key"
