"""A small torch.distributed (DDP) training, as the scheduler's agents launch it under torchrun.

Every rank prints what torchrun gave it; rank 0 prints the all-reduced check value and the loss
before and after training, as one JSON line starting with `RESULT `.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    # One write per line: under PYTHONUNBUFFERED, print() writes the text and its newline separately,
    # and the two ranks of a node share one pipe, so their lines could interleave.
    sys.stdout.write(
        f"rank={rank} world={world} local_rank={os.environ['LOCAL_RANK']} master={os.environ['MASTER_ADDR']} "
        f"node_rank={os.environ['ATELIER_NODE_RANK']} cuda_visible={os.environ.get('CUDA_VISIBLE_DEVICES', '')}\n"
    )
    sys.stdout.flush()
    check = torch.tensor([float(rank + 1)])
    dist.all_reduce(check)
    generator = torch.Generator().manual_seed(1234 + rank)
    inputs = torch.randn(256, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.MSELoss()
    first = last = 0.0
    for step in range(60):
        optimiser.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimiser.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    weights = model.module.weight.detach().clone()
    gathered = [torch.zeros_like(weights) for _ in range(world)]
    dist.all_gather(gathered, weights)
    same = all(torch.equal(gathered[0], w) for w in gathered)
    if rank == 0:
        print(
            "RESULT "
            + json.dumps({"world": world, "allreduce": check.item(), "first": first, "last": last, "same": same})
        )
    # Every rank reaches the end before any tears its connections down: a gloo peer that closes while
    # another still runs its pair threads aborts that process ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
    # Even after a clean destroy, torch's C++ teardown at interpreter exit aborts now and then (about 1 run
    # in 15 on 2 busy cores, after "destroyed" was printed): leave without it, the work being done and flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
