"""A Flower ``Grid`` stand-in that delivers messages to a real ClientApp in this process.

It lets the gossip relay and the sites run their real code, with real
sealing, on many rounds in milliseconds, and it keeps every message it
relays, so a test can look at exactly what the relay saw. Every message
crosses it as Flower's wire format (``message_to_proto`` and back), as it
crosses a SuperLink: no object is shared between the coordinator and a
site, or between two messages. Simulation and deployment tests use
Flower's own engine; this is for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto

RUN_ID = 1  # what the ``task_identity`` fixture gives every message it makes
# Node ids of the sites: the i-th site (from 0) is node FIRST_NODE + i. Not 1, which is the
# SuperLink's own id (``SUPERLINK_NODE_ID``): what comes from it the coordinator reads as
# the SuperLink answering for a node it lost.
FIRST_NODE = 101


class InProcessGrid:
    def __init__(self, client_app: ClientApp, sites: int) -> None:
        self.client_app = client_app
        self.contexts = {
            FIRST_NODE + index: Context(
                run_id=RUN_ID,
                node_id=FIRST_NODE + index,
                node_config={"partition-id": index, "num-partitions": sites},
                state=RecordDict(),
                run_config={},
            )
            for index in range(sites)
        }
        self.relayed: list[Message] = []
        self.down: Callable[[int, Message], bool] = lambda node, msg: False
        self.in_transit: Callable[[Message], None] = lambda msg: None
        self._replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str
    ) -> Message:
        return Message(
            content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id
        )

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Deliver each message now; its reply waits for ``pull_messages``. The ids, as
        Flower's grids give them: each message's object id."""
        ids = []
        for sent in messages:
            sent.metadata.__dict__["_message_id"] = sent.object_id
            ids.append(sent.metadata.message_id)
            self._replies[sent.metadata.message_id] = self._deliver(over_the_wire(sent))
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def _deliver(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        self.in_transit(message)
        self.relayed.append(message)
        if self.down(node, message):
            return Message(Error(code=0, reason="node down"), reply_to=message)
        try:
            reply = over_the_wire(self.client_app(message, self.contexts[node]))
        except Exception as err:  # as Flower's runtime: a failing ClientApp is an error reply
            reply = Message(Error(code=0, reason=f"ClientApp raised: {err}"), reply_to=message)
        self.relayed.append(reply)
        return reply


def over_the_wire(message: Message) -> Message:
    """``message`` as the other end receives it: serialised and parsed again."""
    return message_from_proto(message_to_proto(message))
