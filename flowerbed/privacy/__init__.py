"""DP-SGD with Opacus: the per-site privacy account, noise planning, per-sample gradients,
the membership attack, and the sealing of peer payloads."""
