"""gRPC handlers of the SchedulerService (users) and the AgentService (node agents)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2

from atelier.runtime.auth import acting_as
from atelier.runtime.server import BlockingRunner
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import agent_service_pb2_grpc, scheduler_service_pb2_grpc
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduler.v1 import scheduler_service_pb2 as rpc
from services.scheduler import convert
from services.scheduler.jobs import ENDED, Jobs
from services.scheduler.logs import Logs
from services.scheduler.nodes import Nodes, NodeUse

Context = grpc.aio.ServicerContext[Any, Any]
FOLLOW_POLL_SECONDS = 0.2
FOLLOW_SETTLE_SECONDS = 1.0


class SchedulerServicer(scheduler_service_pb2_grpc.SchedulerServiceServicer):
    """Thin handlers over `Jobs`, `Nodes` and `Logs`."""

    def __init__(
        self, jobs: Jobs, nodes: Nodes, logs: Logs, precisions: Callable[[str], list[int]], run: BlockingRunner
    ) -> None:
        self.jobs = jobs
        self.nodes = nodes
        self.logs = logs
        self.precisions = precisions
        self.run = run

    async def CreateJob(self, request: rpc.CreateJobRequest, context: Context) -> pb.Job:
        request.job.user = acting_as(request.job.user)  # with access control on, the caller's
        return convert.job(await self.run(self.jobs.create_job, request.parent, request.job, request.job_id))

    async def GetJob(self, request: rpc.GetJobRequest, context: Context) -> pb.Job:
        return convert.job(await self.run(self.jobs.get_job, request.name))

    async def ListJobs(self, request: rpc.ListJobsRequest, context: Context) -> rpc.ListJobsResponse:
        views, token = await self.run(
            self.jobs.list_jobs, request.parent, list(request.states), request.page_size, request.page_token
        )
        return rpc.ListJobsResponse(jobs=[convert.job(v) for v in views], next_page_token=token)

    async def CancelJob(self, request: rpc.CancelJobRequest, context: Context) -> pb.Job:
        return convert.job(await self.run(self.jobs.cancel_job, request.name))

    async def ReadJobLogs(
        self, request: rpc.ReadJobLogsRequest, context: Context
    ) -> AsyncIterator[rpc.ReadJobLogsResponse]:
        offset = request.offset
        settle = 0.0
        told: int | None = None  # the state last sent
        while True:
            lines, state = await self.run(self.logs.read, request.name, offset)
            if lines:
                offset = lines[-1].id or offset
                told = state
                yield rpc.ReadJobLogsResponse(lines=[convert.log_line(r) for r in lines], state=state)  # type: ignore[arg-type]
                continue
            if not request.follow:
                yield rpc.ReadJobLogsResponse(state=state)  # type: ignore[arg-type]
                return
            if state in ENDED:
                # Agents ship a process's last lines just after reporting its exit: wait for them.
                settle += FOLLOW_POLL_SECONDS
                if settle > FOLLOW_SETTLE_SECONDS:
                    yield rpc.ReadJobLogsResponse(state=state)  # type: ignore[arg-type]
                    return
            elif state != told:
                # A follower hears at once that the stream is open, and of each change of state between lines
                # (a REST caller's response starts with the first message).
                told = state
                yield rpc.ReadJobLogsResponse(state=state)  # type: ignore[arg-type]
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    async def GetNode(self, request: rpc.GetNodeRequest, context: Context) -> pb.Node:
        row, use = await self.run(self.nodes.get_node, request.name)
        return convert.node(row, use, self.precisions)

    async def ListNodes(self, request: rpc.ListNodesRequest, context: Context) -> rpc.ListNodesResponse:
        rows, token = await self.run(self.nodes.list_nodes, request.page_size, request.page_token)
        return rpc.ListNodesResponse(
            nodes=[convert.node(r, use, self.precisions) for r, use in rows], next_page_token=token
        )


class AgentServicer(agent_service_pb2_grpc.AgentServiceServicer):
    """What node agents call: register, heartbeat, write logs."""

    def __init__(
        self, nodes: Nodes, logs: Logs, precisions: Callable[[str], list[int]], interval: float, run: BlockingRunner
    ) -> None:
        self.nodes = nodes
        self.logs = logs
        self.precisions = precisions
        self.interval = duration_pb2.Duration()
        self.interval.FromNanoseconds(int(interval * 1e9))
        self.run = run

    async def RegisterNode(self, request: agent.RegisterNodeRequest, context: Context) -> pb.Node:
        row = await self.run(self.nodes.register, request.node, request.node_id)
        return convert.node(row, NodeUse(), self.precisions)

    async def Heartbeat(self, request: agent.HeartbeatRequest, context: Context) -> agent.HeartbeatResponse:
        beat = await self.run(self.nodes.heartbeat, request.name, list(request.cards), list(request.tasks))
        return agent.HeartbeatResponse(tasks=beat.tasks, interval=self.interval, registered=beat.registered)

    async def WriteTaskLogs(self, request: agent.WriteTaskLogsRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.logs.append, request.job, list(request.lines))
        return empty_pb2.Empty()
