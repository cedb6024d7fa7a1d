"""The residency policy: which countries may receive a site's model updates.

The federation file's ``[residency]`` table maps a sending country to the
countries allowed to receive its sites' updates; a country it does not list
may send anywhere (the default is no restriction), and a site may always
send within its own country. Strategies never schedule
a transfer the policy forbids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResidencyPolicy:
    allow: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def permits(self, sender_country: str, receiver_country: str) -> bool:
        """May a site in ``sender_country`` send a model update to ``receiver_country``?

        Within its own country a site may always send: nothing leaves the country.
        """
        allowed = self.allow.get(sender_country)
        return sender_country == receiver_country or allowed is None or receiver_country in allowed
