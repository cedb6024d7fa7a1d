"""The network every party builds alike, and how it travels in a round's config."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord

from flowerbed.protocol import records as R


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the same network on another machine."""

    name: str
    spatial_dims: int
    in_channels: int
    out_channels: int

    def to_config(self) -> dict[str, str | int]:
        """The config entries that name this network in an instruction."""
        return {
            R.MODEL: self.name,
            R.SPATIAL_DIMS: self.spatial_dims,
            R.IN_CHANNELS: self.in_channels,
            R.OUT_CHANNELS: self.out_channels,
        }

    @classmethod
    def from_config(cls, config: ConfigRecord) -> ModelSpec:
        """The network an instruction's config names (``KeyError`` if it names none)."""
        return cls(
            str(config[R.MODEL]),
            int(config[R.SPATIAL_DIMS]),
            int(config[R.IN_CHANNELS]),
            int(config[R.OUT_CHANNELS]),
        )
