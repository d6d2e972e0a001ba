"""The access table's deployment lookup: a served deployment answers from memory, others from the database."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from atelier.errors import NotFound
from atelier.runtime.server import BlockingRunner
from services.inference.deployments import Deployments
from services.inference.repository import ModelRepository
from services.inference.server import deployment_project


class StoredDeployments:
    def __init__(self, projects: dict[str, str]) -> None:
        self.projects = projects
        self.asked: list[str] = []

    def by_id(self, deployment_id: str) -> Any:
        self.asked.append(deployment_id)
        project = self.projects.get(deployment_id)
        return None if project is None else type("View", (), {"project": project})()


class ServedModels:
    def __init__(self, projects: dict[str, str]) -> None:
        self.projects = projects

    def served_project(self, deployment_id: str) -> str | None:
        return self.projects.get(deployment_id)


def test_a_served_deployment_is_looked_up_in_memory_and_others_in_the_database() -> None:
    stored = StoredDeployments({"digits": "vision", "parked": "speech"})
    served = ServedModels({"digits": "vision"})
    runner = BlockingRunner(1)
    lookup = deployment_project(cast(Deployments, stored), runner, cast(ModelRepository, served))

    async def scenario() -> None:
        assert await lookup("digits") == "vision"
        assert stored.asked == []  # no database query for a served deployment
        assert await lookup("parked") == "speech"  # deployed but not served: the database answers
        assert stored.asked == ["parked"]
        with pytest.raises(NotFound, match="unknown model: 'nope'"):
            await lookup("nope")

    try:
        asyncio.run(scenario())
    finally:
        runner.shutdown()
