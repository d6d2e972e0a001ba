"""Chapter 1, access: the lab's admin makes a researcher a member of the project, a node token for the
agents, and a second user without membership; from then on the demo runs as the researcher, logged in,
through the gateway's one address, and the outsider is refused."""

from __future__ import annotations

from demo.chapter import Chapter, Context
from demo.runner import DemoError, Runner

PROJECT = "default"
RESEARCHER, OUTSIDER, AGENTS = "ada", "bob", "demo-agents"


def run(context: Context) -> None:
    runner = context.runner
    runner.step("As the lab's admin (the token `atelier up --auth` left in the stack's home): who am I?")
    runner.atelier("whoami")
    runner.step(f"Create the researcher {RESEARCHER!r} and make her admin of project {PROJECT!r}")
    runner.atelier("iam", "users", "create", RESEARCHER, "--display-name", "Ada, the researcher")
    runner.atelier("iam", "members", "add", PROJECT, RESEARCHER, "--role", "admin")
    runner.step(f"Create {OUTSIDER!r}, who is no member of {PROJECT!r}")
    runner.atelier("iam", "users", "create", OUTSIDER)
    runner.step("A service account with the agent role, for the node agents of chapter 4")
    runner.atelier("iam", "service-accounts", "create", AGENTS, "--cluster-role", "agent")
    runner.agent_token = _secret(runner, f"serviceAccounts/{AGENTS}", "nodes of the demo")
    outsider = _secret(runner, OUTSIDER, "bob's laptop")
    researcher = _secret(runner, RESEARCHER, "ada's laptop")

    gateway = _gateway(runner)
    runner.step(f"From here on every command goes through the gateway's one address, {gateway}, as {RESEARCHER}")
    runner.settings["ATELIER_ADDRESS"] = gateway
    runner.atelier("login", "--token", researcher, show_output=True)
    runner.atelier("whoami")
    runner.step(f"{OUTSIDER} tries to list the datasets of project {PROJECT!r}")
    refusal = runner.atelier_fails("data", "ls", "digits", token=outsider)
    if "has no role in project" not in refusal:
        raise DemoError(f"the outsider was refused for another reason: {refusal}")
    runner.ok(f"{OUTSIDER} was refused: no role in project {PROJECT!r}")
    context.refs["researcher"] = RESEARCHER


def _secret(runner: Runner, principal: str, name: str) -> str:
    created = runner.quiet_json("iam", "tokens", "create", principal, "--name", name, "--expires", "1d")
    runner.info(f"token {created['token']['name']} created (its secret is shown once, kept by the demo)")
    return str(created["secret"])


def _gateway(runner: Runner) -> str:
    status = runner.quiet_json("status")
    for service in status["services"]:
        if service["name"] == "gateway" and service.get("address"):
            return str(service["address"])
    raise DemoError("`atelier status` shows no gateway address")


CHAPTER = Chapter(
    title="Access",
    summary="A researcher logs in and works through the gateway; a user without a role is refused.",
    run=run,
)
