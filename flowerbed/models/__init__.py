"""MONAI networks made safe for Opacus DP-SGD, built by name (``catalogue.MODELS``)."""
