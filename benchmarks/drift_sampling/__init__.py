"""What drift sampling costs inference: request latency with sampling on and off, in the same run.

Target (issue 8): the monitor ingests drift samples from 1,000 requests/s without slowing inference by
more than 2% at the median.

Starts a data service, a registry, a monitor and two inference services (`python -m services.<name>`, a
fresh ATELIER_HOME under benchmarks/.work/drift): one with `ATELIER_INFERENCE_DRIFT_SAMPLE_RATE=1`
(every request sampled), one with 0. Both serve the same model: a 64-feature linear classifier
registered from a run whose input is a dataset version of 64-feature rows, so the monitor builds a real
reference and compares its window every 5 s (when new samples came) during the run. An open-loop
asyncio gRPC client sends single-row ModelInfer requests at `--rate` per second in phases of
`--phase-seconds`, one phase per side in each of `--rounds` rounds, back to back, the order alternating
(on-off, off-on, ...), so that a drift of the machine's other load over time falls on both sides.

It prints each round's medians and their ratio, the median of those ratios (the figure to judge the
target by) and the ratio of the pooled medians; per side the p90, failures, and the CPU time (user +
system, from /proc) the inference process and the client used per request and the share of the
machine's cores busy; the monitor's CPU per sampled request over the whole run; the load average before
and after; and whether the load saturated anything (the client behind its schedule, the client near a
whole core, the cores nearly all busy), in which case the latencies measure queues, not the sampler.
The monitor's work on the samples of an on phase's last second falls into the phase after it. It also
prints each inference server's CPU per request by thread (`main` is the event loop).

With `--pin-servers` both inference servers run on the last core and the client on the others, so both
sides' CPU is measured on one core (one side is busy at a time). Unpinned, A/A runs (`--sample-rate 0`)
showed the two servers 9-30 us of CPU per request apart with no sampling at all, the side started first
the dearer (presumably the cores, shared with other work, are not equally loaded); pinned, 8 us.

    .venv/bin/python -m benchmarks.drift_sampling [--rate 1000] [--phase-seconds 5] [--rounds 3]
        [--drift-nice N] [--sample-rate 1]   # --sample-rate 0: both servers sample nothing (A/A, the noise)
        [--pin-servers]
"""
