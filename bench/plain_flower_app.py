"""The baseline: a plain Flower FedAvg app with the same network, data and rounds.

Nothing of flowerbed's framework runs here: no federation file, no site
identity, no DP, no run folder, no per-site reporting. Only the network
class and the synthetic arrays are imported, so both sides train the very
same model on the very same examples and the timing ratio isolates the
framework's overhead.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch.nn import functional as F

from flowerbed.datasets.source import load_dataset
from flowerbed.models.small_cnn import SmallCNN


def shard(partition_id: int, partitions: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = load_dataset("synthetic", partitions, 0)
    images = dataset.train if split == "train" else dataset.test
    order = np.random.default_rng(0).permutation(len(images))
    mine = np.array_split(order, partitions)[partition_id]
    return torch.from_numpy(images.images[mine]), torch.from_numpy(images.labels[mine])


def make_apps(rounds: int, batch_size: int = 32, lr: float = 0.01) -> tuple[ServerApp, ClientApp]:
    client = ClientApp()
    server = ServerApp()

    def local(msg: Message, context: Context, split: str):
        x, y = shard(
            int(context.node_config["partition-id"]),
            int(context.node_config["num-partitions"]),
            split,
        )
        model = SmallCNN(2, 1, 2)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        return model, x, y

    @client.train()
    def _train(msg: Message, context: Context) -> Message:
        model, x, y = local(msg, context, "train")
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        model.train()
        for batch in torch.randperm(len(y)).split(batch_size):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"num-examples": len(y)}),
            }
        )
        return Message(content, reply_to=msg)

    @client.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        model, x, y = local(msg, context, "test")
        model.eval()
        with torch.no_grad():
            loss = F.cross_entropy(model(x), y).item()
        metrics = MetricRecord({"num-examples": len(y), "loss": loss})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        sites = len(list(grid.get_node_ids())) or 1
        torch.manual_seed(0)
        strategy = FedAvg(
            min_available_nodes=sites, min_train_nodes=sites, min_evaluate_nodes=sites
        )
        strategy.start(
            grid,
            ArrayRecord(SmallCNN(2, 1, 2).state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord(),
        )

    return server, client
