"""How rounds are coordinated: Flower's strategies with per-site reporting, and the gossip
relay; each picked by name from ``flowerbed.catalogue.STRATEGIES``."""
