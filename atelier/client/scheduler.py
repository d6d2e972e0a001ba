"""Clients of the scheduler: `SchedulerClient` for people and tools, `AgentClient` for node agents."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atelier.client.channel import ServiceClient, connect
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import agent_service_pb2_grpc, scheduler_service_pb2_grpc
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduler.v1 import scheduler_service_pb2 as rpc

FOLLOW_TIMEOUT = 30 * 24 * 3600.0
"""Deadline of a followed log stream: it lasts as long as the job."""


class SchedulerClient(ServiceClient):
    """Typed calls of `atelier.scheduler.v1.SchedulerService`."""

    service = "scheduler"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> SchedulerClient:
        return cls(connect(address), address=address)

    def submit(self, project: str, job: pb.Job, job_id: str = "") -> pb.Job:
        request = rpc.CreateJobRequest(parent=f"projects/{project}", job=job, job_id=job_id)
        return self.call(self.stub.CreateJob, request)

    def get_job(self, name: str) -> pb.Job:
        return self.call(self.stub.GetJob, rpc.GetJobRequest(name=name))

    def list_jobs(self, project: str = "-", states: list[pb.JobState.ValueType] | None = None) -> Iterator[pb.Job]:
        request = rpc.ListJobsRequest(parent=f"projects/{project}", states=states or [])
        return self.pages(self.stub.ListJobs, request, "jobs")

    def cancel(self, name: str) -> pb.Job:
        return self.call(self.stub.CancelJob, rpc.CancelJobRequest(name=name))

    def logs(self, name: str, follow: bool = False, offset: int = 0) -> Iterator[rpc.ReadJobLogsResponse]:
        request = rpc.ReadJobLogsRequest(name=name, follow=follow, offset=offset)
        return self.stream(self.stub.ReadJobLogs, request, FOLLOW_TIMEOUT if follow else None)

    def get_node(self, name: str) -> pb.Node:
        return self.call(self.stub.GetNode, rpc.GetNodeRequest(name=name))

    def list_nodes(self) -> Iterator[pb.Node]:
        return self.pages(self.stub.ListNodes, rpc.ListNodesRequest(), "nodes")


class AgentClient(ServiceClient):
    """Typed calls of `atelier.scheduler.v1.AgentService`, as a node agent makes them."""

    service = "scheduler"

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = agent_service_pb2_grpc.AgentServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> AgentClient:
        return cls(connect(address), address=address)

    def register(self, node: pb.Node, node_id: str) -> pb.Node:
        return self.call(self.stub.RegisterNode, agent.RegisterNodeRequest(node=node, node_id=node_id))

    def heartbeat(self, name: str, cards: list[pb.Card], tasks: list[agent.TaskStatus]) -> agent.HeartbeatResponse:
        return self.call(self.stub.Heartbeat, agent.HeartbeatRequest(name=name, cards=cards, tasks=tasks))

    def write_logs(self, job: str, lines: list[pb.LogLine]) -> None:
        self.call(self.stub.WriteTaskLogs, agent.WriteTaskLogsRequest(job=job, lines=lines))
