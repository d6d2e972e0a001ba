"""The GPU-aware scheduler: jobs, nodes and their agents, placement, fair share, Slurm hand-off."""
