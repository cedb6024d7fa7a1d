"""The roll: the federation's sites as they answered the roll call (``roll_call``)."""

from __future__ import annotations

from dataclasses import dataclass

from flowerbed.protocol.model_spec import ModelSpec


@dataclass(frozen=True)
class Roll:
    """The federation's sites as they answered, in federation order."""

    names: list[str]
    node_ids: list[int]
    public_keys: list[bytes]
    spec: ModelSpec
    task: str  # what the sites' data are for: ``catalogue.CLASSIFICATION`` or ``SEGMENTATION``

    def name_of(self, node_id: int) -> str:
        """The site behind a node id (its node id if it never answered the roll call)."""
        return dict(zip(self.node_ids, self.names, strict=True)).get(node_id, f"node {node_id}")
