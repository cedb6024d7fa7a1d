"""The network every party builds alike, and how it travels in a round's config."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord

from flowerbed.protocol import records as R


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the same network on another machine, and to feed it.

    ``input_shape`` is one image's spatial size: the honesty probe's inputs
    take it, so any network is probed at the size it was made for.
    """

    name: str
    spatial_dims: int
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]

    def to_config(self) -> dict[str, str | int | list[int]]:
        """The config entries that name this network in an instruction."""
        return {
            R.MODEL: self.name,
            R.SPATIAL_DIMS: self.spatial_dims,
            R.IN_CHANNELS: self.in_channels,
            R.OUT_CHANNELS: self.out_channels,
            R.INPUT_SHAPE: list(self.input_shape),
        }

    @classmethod
    def from_config(cls, config: ConfigRecord) -> ModelSpec:
        """The network an instruction's config names (``KeyError`` if it names none)."""
        return cls(
            str(config[R.MODEL]),
            int(config[R.SPATIAL_DIMS]),
            int(config[R.IN_CHANNELS]),
            int(config[R.OUT_CHANNELS]),
            tuple(int(side) for side in config[R.INPUT_SHAPE]),
        )

    @classmethod
    def for_images(cls, name: str, sample_shape: tuple[int, ...], classes: int) -> ModelSpec:
        """The spec of network ``name`` for images of ``sample_shape`` (channels first)."""
        return cls(name, len(sample_shape) - 1, sample_shape[0], classes, tuple(sample_shape[1:]))
