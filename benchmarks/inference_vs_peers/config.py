"""Paths and the fixed settings every server and load generator shares: models' shapes, batch, instances."""

from __future__ import annotations

import os

from benchmarks.paths import WORK

RUN = WORK / "inference-run"
PEER_PACKAGES = {"pytriton": "nvidia-pytriton==0.7.0", "litserve": "litserve==0.2.19"}
SHAPES = {"resnet": (3, 64, 64), "mlp": (64,)}
MAX_BATCH = 64
INSTANCES = 2
START_TIMEOUT = 300.0
CLOCK = os.sysconf("SC_CLK_TCK")
# How the helper processes (load generator, in-process limit, peers' servers) run this package.
ENTRY = ("-m", "benchmarks.inference_vs_peers")
