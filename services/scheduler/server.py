"""Bootstrap of the scheduler: settings, database, domain, servicers, the scheduling cycle; then serve."""

from __future__ import annotations

from pathlib import Path

from atelier.client import DataClient
from atelier.client.channel import connect
from atelier.client.iam import IamClient
from atelier.runtime.auth import validate_mode
from atelier.runtime.database import create_engine, default_url, migrate
from atelier.runtime.metrics import service_registry
from atelier.runtime.server import BlockingRunner, GrpcService, PeriodicJob, ServiceHost, serve_main
from atelier.scheduler.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    scheduler_service_pb2,
    scheduler_service_pb2_grpc,
)
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.stack.addresses import service_address
from services.scheduler.cluster import Cluster, precisions_of
from services.scheduler.cycle import Cycle
from services.scheduler.datalink import DatasetLink
from services.scheduler.executors.slurm.executor import slurm_executor
from services.scheduler.executors.slurm.script import ScriptSettings
from services.scheduler.handoff import Handoff
from services.scheduler.jobs import Jobs
from services.scheduler.jobtokens import JobTokens
from services.scheduler.logs import Logs
from services.scheduler.metrics import CycleMetrics, SchedulerCollector
from services.scheduler.nodes import Nodes
from services.scheduler.servicer import AgentServicer, SchedulerServicer
from services.scheduler.settings import SchedulerSettings

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEDULER = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name
AGENTS = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


def build(settings: SchedulerSettings) -> ServiceHost:
    """Wire the scheduler from its settings (migrating the database on the way)."""
    engine = create_engine(
        settings.database_url or default_url(settings.home, "scheduler"), settings.sqlite_synchronous
    )
    migrate(engine, MIGRATIONS, "alembic_version_scheduler")

    def data_address() -> str:
        return settings.data_address or service_address("data", settings.home)

    datasets = DatasetLink(lambda: DataClient.at(data_address()))
    job_tokens = None
    if validate_mode(settings.auth, settings.host):
        job_tokens = JobTokens(
            lambda: IamClient(
                connect(settings.iam_address or service_address("iam", settings.home), token=settings.token)
            )
        )
    slurm = slurm_executor(
        settings.slurm_bin_dir,
        settings.slurm_conf,
        settings.slurm_command_timeout_seconds,
        settings.slurm_gpu_types,
        settings.slurm_work_dir,
        settings.home,
        settings.slurm_partition,
        ScriptSettings(settings.slurm_python, settings.rendezvous_port_base, settings.rendezvous_port_count),
        job_tokens.token_for if job_tokens else None,
        data_address,
    )
    cluster = Cluster(engine, {pb.EXECUTOR_KIND_SLURM: slurm.check})
    executor = pb.EXECUTOR_KIND_SLURM if settings.default_executor == "slurm" else pb.EXECUTOR_KIND_AGENTS
    jobs = Jobs(
        engine,
        settings.priority_classes,
        cluster.check_feasible,
        datasets.resolve,
        executor,
        {pb.EXECUTOR_KIND_SLURM: slurm},
    )
    handoff = Handoff(engine, pb.EXECUTOR_KIND_SLURM, slurm, "Slurm")
    nodes = Nodes(engine, settings.grace_period_seconds, job_tokens.token_for if job_tokens else None)
    logs = Logs(engine)
    registry = service_registry()
    cycle = Cycle(engine, settings, CycleMetrics(registry))
    registry.register(SchedulerCollector(engine, settings, lambda: cycle.usage))
    runner = BlockingRunner(settings.workers)
    scheduler = SchedulerServicer(jobs, nodes, logs, precisions_of, runner)
    agents = AgentServicer(nodes, logs, precisions_of, settings.heartbeat_interval_seconds, runner)
    host = ServiceHost(
        name="scheduler",
        settings=settings,
        registry=registry,
        services=[
            GrpcService(
                SCHEDULER, lambda s: scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(scheduler, s)
            ),
            GrpcService(AGENTS, lambda s: agent_service_pb2_grpc.add_AgentServiceServicer_to_server(agents, s)),
        ],
        jobs=[
            PeriodicJob("schedule", settings.cycle_interval_seconds, cycle.run, runner),
            PeriodicJob("slurm", settings.slurm_poll_interval_seconds, handoff.run, runner),
            PeriodicJob(
                "lost-nodes",
                max(settings.heartbeat_interval_seconds, 1.0),
                lambda: nodes.mark_lost(settings.node_timeout_seconds),
                runner,
            ),
        ],
    )
    host.on_stop.append(runner.shutdown)
    host.on_stop.append(engine.dispose)
    return host


def main() -> None:
    """`python -m services.scheduler`."""
    serve_main("scheduler", SchedulerSettings, build)
