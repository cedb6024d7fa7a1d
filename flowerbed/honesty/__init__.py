"""Honesty checks: catch a party whose reply is not the work it claims.

One vocabulary of reasons (``reasons``), the measures every check shares
(``probe``, ``measures``, ``sketch``), and the three checkers: the
coordinator's on the replies it aggregates (``replies``), a gossip site's
on its neighbours' payloads (``neighbours``), and the gossip relay's on the
sketches it relays (``training``). Whoever owns a ledger writes the flags:
checks only say who is flagged and why.
"""
