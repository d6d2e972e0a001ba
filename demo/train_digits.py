"""A training script as a researcher writes it: train a small classifier on a dataset version of
the digits and track everything with the SDK.

    python -m demo.train_digits --dataset digits@v2 --lr 0.05 --hidden 32 --epochs 40
    atelier jobs submit --nodes 2 --gpus-per-node 1 --dataset digits@v2 -- python -m demo.train_digits ...

It reads the dataset version (from the job's data directory when the scheduler fetched it, else
pulled through the data service), trains on the `train` split, logs the loss every step and
accuracy every epoch, and registers the model (TorchScript) as a version of `digits` whose lineage
records the dataset version, the code commit and the hyper-parameters.

Under torchrun (WORLD_SIZE > 1) the same script trains data-parallel: every rank takes its share of
each batch, DistributedDataParallel averages the gradients (gloo without GPUs, NCCL with them), and
rank 0 alone tracks the run and registers the model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import atelier
from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.names import default_project, parse_dataset_ref
from atelier.stack.addresses import service_address
from atelier.tracking.run import ActiveRun


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


@contextmanager
def dataset_files(ref: str) -> Iterator[Path]:
    """The dataset version's files: in the job's data directory if the scheduler fetched them there,
    else pulled through the data service into a scratch directory."""
    fetched = (
        Path(os.environ.get("ATELIER_DATA_DIR", "/nonexistent")) / parse_dataset_ref(ref, default_project()).dataset
    )
    if (fetched / "labels.csv").exists():
        yield fetched
        return
    with tempfile.TemporaryDirectory() as scratch:
        client = DataClient.at(service_address("data"))
        pull(client, parse_dataset_ref(ref, default_project()), Path(scratch))
        yield Path(scratch)


def distributed() -> tuple[int, int]:
    """Join the job's process group when torchrun started several workers; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank()
    sys.stdout.write(f"rank {rank} of {world} ({backend}) on {os.uname().nodename}\n")  # one write: ranks share a pipe
    sys.stdout.flush()
    return rank, world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="digits@latest")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rank, world = distributed()
    if rank == 0:
        train(args, world)
    else:
        with dataset_files(args.dataset) as directory:
            fit(args, load(directory), rank, world, run=None)
    if world > 1:
        torch.distributed.barrier()  # all ranks finish before any closes its gloo/NCCL connections
        torch.distributed.destroy_process_group()
        # torch's C++ teardown at interpreter exit aborts now and then after a clean destroy (gloo, about 1
        # run in 15 on a busy machine); the run is closed and the output flushed, so leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def train(args: argparse.Namespace, world: int) -> None:
    """Rank 0 (or the only process): train while tracking the run, then register the model."""
    params = {"lr": args.lr, "hidden": args.hidden, "epochs": args.epochs, "batch": args.batch, "seed": args.seed}
    if world > 1:
        params["world_size"] = world
    with atelier.start_run(experiment="digits", params=params, inputs=[args.dataset]) as run:
        with dataset_files(args.dataset) as directory:
            data = load(directory)
        net = fit(args, data, 0, world, run)
        version = run.log_model(net, data[2][:4], name="digits")
    json.dump(
        {"run": run.name, "model_version": version.name, "val_accuracy": version.metrics["val_accuracy"]}, sys.stdout
    )
    sys.stdout.write("\n")


def fit(
    args: argparse.Namespace,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    rank: int,
    world: int,
    run: ActiveRun | None,
) -> torch.nn.Module:
    """SGD over the train split; each rank takes every `world`-th sample of a batch (same seed, same order)."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(args.seed)
    net = model(args.hidden)
    trained = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    optimizer = torch.optim.SGD(trained.parameters(), lr=args.lr, momentum=0.9)
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), args.batch):
            batch = order[start : start + args.batch]
            if len(batch) < world:  # too few left for every rank: all ranks skip it alike
                continue
            batch = batch[rank::world]
            loss = torch.nn.functional.cross_entropy(trained(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if run is not None:
                run.log_metrics({"loss": float(loss)}, step=step)
            step += 1
        if run is not None:
            run.log_metrics(
                {"train_accuracy": accuracy(net, x_train, y_train), "val_accuracy": accuracy(net, x_test, y_test)},
                step=epoch,
            )
    return net


if __name__ == "__main__":
    main()
