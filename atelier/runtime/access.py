"""Who may call what: the one table from RPC to the permission it needs and where the request
names its project. Every service's auth check reads it; an RPC missing here is refused (deny by
default), and a test walks every service descriptor to keep it complete.

`field` is the request field (dotted for nested messages) holding a resource name under
`projects/{project}/...`, or a bare project id when it ends in `project_id`. A client-streaming
RPC is checked on its first message. `lookup` names a service-supplied function that finds the
project from the field's value (the KServe protocol names a deployment, not a project).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Permission(enum.Enum):
    """What a call needs."""

    PUBLIC = "public"
    """Nothing: health, reflection, and Authenticate (whose request carries the token itself)."""
    AUTHENTICATED = "authenticated"
    """Any valid principal (cluster-wide reads such as the list of nodes)."""
    READ = "read"
    """Viewer of the project."""
    WRITE = "write"
    """Member of the project."""
    WRITE_OR_SERVICE = "write-or-service"
    """As WRITE, or an Atelier service acting on its own behalf: the registry pins the dataset versions
    and artifacts a model version's lineage names once it has authorized the callers, several callers'
    versions in one call, so under no one caller's credentials."""
    ADMIN = "admin"
    """Admin of the project (quotas, members, deletions, forced operations)."""
    SELF = "self"
    """The principal the field names (its own tokens), or a cluster admin."""
    SELF_OR_SERVICE = "self-or-service"
    """As SELF, or an Atelier service (the scheduler issuing a job's project-scoped token)."""
    OPERATOR = "operator"
    """A cluster operator."""
    AGENT = "agent"
    """A node agent (or an operator)."""
    SERVICE = "service"
    """An Atelier service acting on its own behalf."""
    CLUSTER_ADMIN = "cluster-admin"
    """A cluster admin."""


@dataclass(frozen=True)
class Rule:
    permission: Permission
    field: str = ""
    lookup: str = ""

    @property
    def project_scoped(self) -> bool:
        return self.permission in (Permission.READ, Permission.WRITE, Permission.WRITE_OR_SERVICE, Permission.ADMIN)


P = Permission
DATA = "/atelier.data.v1.DataService/"
REGISTRY = "/atelier.registry.v1.RegistryService/"
SCHEDULER = "/atelier.scheduler.v1.SchedulerService/"
AGENT = "/atelier.scheduler.v1.AgentService/"
INFERENCE = "/atelier.inference.v1.InferenceService/"
MONITOR = "/atelier.monitor.v1.MonitorService/"
IAM = "/atelier.iam.v1.IamService/"
KSERVE = "/inference.GRPCInferenceService/"
DEPLOYMENT = "deployment"
"""The lookup inference supplies: a KServe model name (a deployment id) to its project."""


def _rules(prefix: str, rules: dict[str, Rule]) -> dict[str, Rule]:
    return {prefix + method: rule for method, rule in rules.items()}


RULES: dict[str, Rule] = {
    **_rules(
        DATA,
        {
            "CreateProject": Rule(P.ADMIN, "project_id"),
            "GetProject": Rule(P.READ, "name"),
            "ListProjects": Rule(P.AUTHENTICATED),
            "UpdateProject": Rule(P.ADMIN, "project.name"),
            "CreateDataset": Rule(P.WRITE, "parent"),
            "GetDataset": Rule(P.READ, "name"),
            "ListDatasets": Rule(P.READ, "parent"),
            "DeleteDataset": Rule(P.ADMIN, "name"),
            "FindMissingChunks": Rule(P.WRITE, "parent"),
            "UploadChunks": Rule(P.WRITE, "parent"),
            "ReadChunks": Rule(P.READ, "name"),
            "CreateVersion": Rule(P.WRITE, "parent"),
            "GetVersion": Rule(P.READ, "name"),
            "ListVersions": Rule(P.READ, "parent"),
            "DeleteVersion": Rule(P.ADMIN, "name"),
            "ListFiles": Rule(P.READ, "name"),
            "ReadFile": Rule(P.READ, "name"),
            "DiffVersions": Rule(P.READ, "name"),
            "CreateArtifact": Rule(P.WRITE, "parent"),
            "GetArtifact": Rule(P.READ, "name"),
            "DeleteArtifact": Rule(P.ADMIN, "name"),
            "CreatePin": Rule(P.WRITE_OR_SERVICE, "parent"),
            "BatchCreatePins": Rule(P.WRITE_OR_SERVICE, "parent"),
            "ListPins": Rule(P.READ, "parent"),
            "DeletePin": Rule(P.WRITE_OR_SERVICE, "name"),
            "CreateTag": Rule(P.WRITE, "parent"),
            "GetTag": Rule(P.READ, "name"),
            "ListTags": Rule(P.READ, "parent"),
            "UpdateTag": Rule(P.WRITE, "tag.name"),
            "DeleteTag": Rule(P.WRITE, "name"),
            "ListTagEvents": Rule(P.READ, "parent"),
            "GetStorageUsage": Rule(P.READ, "name"),
            "GarbageCollect": Rule(P.OPERATOR),
        },
    ),
    **_rules(
        REGISTRY,
        {
            "CreateExperiment": Rule(P.WRITE, "parent"),
            "GetExperiment": Rule(P.READ, "name"),
            "ListExperiments": Rule(P.READ, "parent"),
            "CreateRun": Rule(P.WRITE, "parent"),
            "GetRun": Rule(P.READ, "name"),
            "ListRuns": Rule(P.READ, "parent"),
            "UpdateRun": Rule(P.WRITE, "run.name"),
            "DeleteRun": Rule(P.ADMIN, "name"),
            "LogRunData": Rule(P.WRITE, "run"),
            "ListMetricHistory": Rule(P.READ, "run"),
            "AddRunArtifact": Rule(P.WRITE, "run"),
            "RecordJobUsage": Rule(P.SERVICE),
            "CreateRegisteredModel": Rule(P.WRITE, "parent"),
            "GetRegisteredModel": Rule(P.READ, "name"),
            "ListRegisteredModels": Rule(P.READ, "parent"),
            "CreateModelVersion": Rule(P.WRITE, "parent"),
            "BatchCreateModelVersions": Rule(P.WRITE, "parent"),
            "GetModelVersion": Rule(P.READ, "name"),
            "ListModelVersions": Rule(P.READ, "parent"),
            "DeleteModelVersion": Rule(P.ADMIN, "name"),
            "SetAlias": Rule(P.WRITE, "model"),
            "DeleteAlias": Rule(P.WRITE, "name"),
            "ListAliasEvents": Rule(P.READ, "model"),
            "GetModelVersionLineage": Rule(P.READ, "name"),
            "GetReproductionSpec": Rule(P.READ, "name"),
        },
    ),
    **_rules(
        SCHEDULER,
        {
            "CreateJob": Rule(P.WRITE, "parent"),
            "GetJob": Rule(P.READ, "name"),
            "ListJobs": Rule(P.READ, "parent"),
            "CancelJob": Rule(P.WRITE, "name"),
            "ReadJobLogs": Rule(P.READ, "name"),
            "GetNode": Rule(P.AUTHENTICATED),
            "ListNodes": Rule(P.AUTHENTICATED),
        },
    ),
    **_rules(
        AGENT,
        {"RegisterNode": Rule(P.AGENT), "Heartbeat": Rule(P.AGENT), "WriteTaskLogs": Rule(P.AGENT)},
    ),
    **_rules(
        INFERENCE,
        {
            "CreateDeployment": Rule(P.WRITE, "parent"),
            "GetDeployment": Rule(P.READ, "name"),
            "ListDeployments": Rule(P.READ, "parent"),
            "UpdateDeployment": Rule(P.WRITE, "deployment.name"),
            "DeleteDeployment": Rule(P.ADMIN, "name"),
        },
    ),
    **_rules(
        KSERVE,
        {
            "ServerLive": Rule(P.AUTHENTICATED),
            "ServerReady": Rule(P.AUTHENTICATED),
            "ServerMetadata": Rule(P.AUTHENTICATED),
            "RepositoryIndex": Rule(P.AUTHENTICATED),
            "ModelReady": Rule(P.READ, "name", DEPLOYMENT),
            "ModelMetadata": Rule(P.READ, "name", DEPLOYMENT),
            "ModelInfer": Rule(P.READ, "model_name", DEPLOYMENT),
            "ModelStreamInfer": Rule(P.READ, "model_name", DEPLOYMENT),
            "ModelConfig": Rule(P.READ, "name", DEPLOYMENT),
            "ModelStatistics": Rule(P.AUTHENTICATED),
            "RepositoryModelLoad": Rule(P.WRITE, "model_name", DEPLOYMENT),
            "RepositoryModelUnload": Rule(P.WRITE, "model_name", DEPLOYMENT),
            "SystemSharedMemoryStatus": Rule(P.OPERATOR),
            "SystemSharedMemoryRegister": Rule(P.OPERATOR),
            "SystemSharedMemoryUnregister": Rule(P.OPERATOR),
            "CudaSharedMemoryStatus": Rule(P.OPERATOR),
            "CudaSharedMemoryRegister": Rule(P.OPERATOR),
            "CudaSharedMemoryUnregister": Rule(P.OPERATOR),
            "TraceSetting": Rule(P.OPERATOR),
            "LogSettings": Rule(P.OPERATOR),
        },
    ),
    **_rules(
        MONITOR,
        {
            "ReportUsage": Rule(P.AGENT),
            "QueryUsage": Rule(P.READ, "parent"),
            "WriteDriftSamples": Rule(P.SERVICE),
            "GetDriftReport": Rule(P.READ, "name"),
        },
    ),
    **_rules(
        IAM,
        {
            "CreateUser": Rule(P.CLUSTER_ADMIN),
            "CreateServiceAccount": Rule(P.CLUSTER_ADMIN),
            "GetPrincipal": Rule(P.AUTHENTICATED),
            "ListPrincipals": Rule(P.AUTHENTICATED),
            "UpdatePrincipal": Rule(P.CLUSTER_ADMIN),
            "CreateToken": Rule(P.SELF_OR_SERVICE, "parent"),
            "ListTokens": Rule(P.SELF, "parent"),
            "RevokeToken": Rule(P.SELF, "name"),
            "CreateMember": Rule(P.ADMIN, "parent"),
            "UpdateMember": Rule(P.ADMIN, "member.name"),
            "DeleteMember": Rule(P.ADMIN, "name"),
            "ListMembers": Rule(P.READ, "parent"),
            "Authenticate": Rule(P.PUBLIC),
            "WriteAuditEvents": Rule(P.SERVICE),
            "ListAuditEvents": Rule(P.ADMIN, "project"),
        },
    ),
}

OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
"""Health checking and reflection answer everyone."""

WRITES = (P.WRITE, P.WRITE_OR_SERVICE, P.ADMIN, P.OPERATOR, P.CLUSTER_ADMIN, P.SELF, P.SELF_OR_SERVICE)
"""Calls needing these are written to the audit log (with the agents' and services' own writes
left out: they are the platform's bookkeeping, not people's actions)."""
