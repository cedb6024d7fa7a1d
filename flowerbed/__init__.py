"""flowerbed: hospitals train medical-imaging models together; images never leave home."""

__version__ = "0.1.0"
