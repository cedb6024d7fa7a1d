"""The gossip relay's check that each site trained, made without seeing a model.

A gossip free rider mixes what its neighbours sent and passes the mix on
untrained; no neighbour can tell, for none holds all the models it mixed.
The relay can: every reply carries a sketch of the model the site sealed
(``honesty.sketch.sketch``, which each addressee checks against the payload it
opens), and sketches are linear. The sketch of a model that was only mixed
lies in the span of the sketches of the model the site held and those it
was sent, all of which the relay saw the round before; a trained model's
does not (``sketch.only_mixed``). An honest site whose data the model
already fits exactly (a loss of 0, so zero gradients) is flagged too: its
round changed nothing, and the flag says so.
"""

from __future__ import annotations

from flowerbed.honesty import reasons
from flowerbed.honesty.sketch import only_mixed

Sketch = list[float]

DID_NOT_TRAIN = reasons.sentence(reasons.ONLY_MIXED)
NO_SKETCH = reasons.sentence(reasons.NO_SKETCH)


class TrainingCheck:
    """Sketches of the model each site holds, round to round, and the check against them."""

    def __init__(self, start: Sketch, sites: int) -> None:
        # every site starts from the same seeded model, public like its sketch
        self.held: list[Sketch] = [start] * sites

    def flag(
        self,
        delivered: dict[int, dict[int, bytes]],
        sketches: dict[int, Sketch | None],
        refused: set[int],
    ) -> dict[int, str]:
        """Site -> why it is flagged, among the sites that sealed payloads this round.

        ``delivered``: receiver -> the senders whose payloads it was handed this
        round; ``sketches``: each answering site's sketch (None if it gave
        none); ``refused``: sites whose privacy budget is spent, which say so
        and only mix. Then each site's sketch becomes the one it holds.
        """
        flags = {}
        for site, sent in sketches.items():
            if sent is None:
                flags[site] = NO_SKETCH
            elif site not in refused and only_mixed(
                sent, self.held[site], [self.held[peer] for peer in delivered.get(site, {})]
            ):
                flags[site] = DID_NOT_TRAIN
        for site, sent in sketches.items():
            if sent is not None:
                self.held[site] = sent
        return flags
