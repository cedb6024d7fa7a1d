"""A Flower ``Grid`` stand-in that delivers messages to a real ClientApp in this process.

It lets the gossip relay and the sites run their real code, with real
sealing, on many rounds in milliseconds, and it keeps every message it
relays, so a test can look at exactly what the relay saw. Simulation and
deployment tests use Flower's own engine; this is for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp

RUN_ID = 1  # what the ``task_identity`` fixture gives every message it makes


class InProcessGrid:
    def __init__(self, client_app: ClientApp, sites: int) -> None:
        self.client_app = client_app
        self.contexts = {
            node: Context(
                run_id=RUN_ID,
                node_id=node,
                node_config={"partition-id": node - 1, "num-partitions": sites},
                state=RecordDict(),
                run_config={},
            )
            for node in range(1, sites + 1)
        }
        self.relayed: list[Message] = []
        self.down: Callable[[int, Message], bool] = lambda node, msg: False
        self.in_transit: Callable[[Message], None] = lambda msg: None

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str
    ) -> Message:
        return Message(
            content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id
        )

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self.in_transit(message)
            self.relayed.append(message)
            if self.down(node, message):
                replies.append(Message(Error(code=0, reason="node down"), reply_to=message))
                continue
            try:
                reply = self.client_app(message, self.contexts[node])
            except Exception as err:  # as Flower's runtime: a failing ClientApp is an error reply
                reply = Message(Error(code=0, reason=f"ClientApp raised: {err}"), reply_to=message)
            self.relayed.append(reply)
            replies.append(reply)
        return replies
