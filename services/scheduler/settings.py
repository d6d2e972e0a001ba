"""Settings of the scheduler (`ATELIER_SCHEDULER_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    """What the scheduler can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_SCHEDULER_", extra="ignore")

    data_address: str = Field(
        "", description="host:port of the data service; empty means ATELIER_DATA_ADDRESS or the local stack."
    )
    cycle_interval_seconds: float = Field(0.5, gt=0, description="How often pending jobs are placed.")
    heartbeat_interval_seconds: float = Field(1.0, gt=0, description="How often agents are told to heartbeat.")
    node_timeout_seconds: float = Field(
        15.0, gt=0, description="A node silent for this long is LOST; its jobs are requeued or failed."
    )
    grace_period_seconds: float = Field(
        10.0, ge=0, description="Time a job's processes get between SIGTERM and SIGKILL on cancel or preemption."
    )
    rendezvous_port_base: int = Field(29400, ge=1024, le=65000, description="First torch rendezvous port.")
    rendezvous_port_count: int = Field(500, ge=1, description="Rendezvous ports handed out round-robin.")
    priority_classes: dict[str, int] = Field(
        default_factory=lambda: {"low": 0, "normal": 1000, "high": 5000},
        description='Priority classes and their priorities, e.g. {"low": 0, "normal": 1000, "high": 5000}.',
    )
    project_shares: dict[str, float] = Field(
        default_factory=dict, description="Fair-share weight per project; projects not named weigh 1."
    )
    project_gpu_quotas: dict[str, int] = Field(
        default_factory=dict, description="Most GPUs a project may hold at once; projects not named are unbounded."
    )
    fair_share_half_life_hours: float = Field(
        168.0, gt=0, description="Half-life of past GPU usage in fair share (Slurm's PriorityDecayHalfLife)."
    )
    usage_save_interval_seconds: float = Field(
        5.0, ge=0, description="How often fair-share usage is written to the database (what a crash may forget)."
    )
    default_executor: str = Field("agents", pattern="^(agents|slurm)$", description="Who runs jobs by default.")
    slurm_bin_dir: str = Field("", description="Directory of sbatch/squeue/sacct/scancel; empty means PATH.")
    slurm_partition: str = Field("", description="Partition jobs are submitted to; empty means Slurm's default.")
    slurm_gpu_types: dict[str, str] = Field(
        default_factory=dict,
        description='Slurm GPU gres type -> card model, e.g. {"a100": "A100-80", "v100": "V100M32"}.',
    )
    slurm_work_dir: str = Field(
        "",
        description="Directory for Slurm batch scripts and job output, shared with the Slurm nodes; "
        "empty: `slurm` under home.",
    )
    slurm_conf: str = Field("", description="slurm.conf the Slurm commands read (SLURM_CONF); empty: Slurm's own.")
    slurm_python: str = Field(
        "",
        description="Python on the Slurm nodes that runs `python ...` commands and torchrun "
        "(`-m torch.distributed.run`); empty: `python` and `torchrun` from the job's PATH.",
    )
    slurm_poll_interval_seconds: float = Field(
        2.0, gt=0, description="How often jobs are handed to Slurm and their state and output followed."
    )
    slurm_command_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="Longest wait for one sbatch/squeue/sacct/scancel call (below clients' 30 s deadline).",
    )
