"""A training script as a researcher writes it: train a small classifier on a dataset version of
the digits and track everything with the SDK.

    python -m demo.train_digits --dataset digits@v2 --lr 0.05 --hidden 32 --epochs 40

It pulls the dataset version through the data service, trains on the `train` split, logs the loss
every step and accuracy every epoch, and registers the model (TorchScript) as a version of
`digits` whose lineage records the dataset version, the code commit and the hyper-parameters.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import atelier
from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.names import parse_dataset_ref
from atelier.stack.addresses import service_address
from atelier.tracking.run import default_project


def load(directory: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images as [N, 1, 8, 8] floats in 0..1 and labels, split into train and test by labels.csv."""
    with open(directory / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = np.stack([np.asarray(Image.open(directory / row["file"]), dtype=np.float32) / 255.0 for row in rows])
    labels = np.array([int(row["label"]) for row in rows])
    test = np.array([row.get("split", "train") == "test" for row in rows])
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    return x[~test], y[~test], x[test], y[test]


def model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="digits@latest")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    params = {"lr": args.lr, "hidden": args.hidden, "epochs": args.epochs, "batch": args.batch, "seed": args.seed}
    with atelier.start_run(experiment="digits", params=params, inputs=[args.dataset]) as run:
        with tempfile.TemporaryDirectory() as scratch:
            client = DataClient.at(service_address("data"))
            pull(client, parse_dataset_ref(args.dataset, default_project()), Path(scratch))
            x_train, y_train, x_test, y_test = load(Path(scratch))
        net = model(args.hidden)
        optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
        step = 0
        for epoch in range(args.epochs):
            order = torch.randperm(len(x_train))
            for start in range(0, len(order), args.batch):
                batch = order[start : start + args.batch]
                loss = torch.nn.functional.cross_entropy(net(x_train[batch]), y_train[batch])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                run.log_metrics({"loss": float(loss)}, step=step)
                step += 1
            run.log_metrics(
                {"train_accuracy": accuracy(net, x_train, y_train), "val_accuracy": accuracy(net, x_test, y_test)},
                step=epoch,
            )
        version = run.log_model(net, x_test[:4], name="digits")
    json.dump(
        {"run": run.name, "model_version": version.name, "val_accuracy": version.metrics["val_accuracy"]}, sys.stdout
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
