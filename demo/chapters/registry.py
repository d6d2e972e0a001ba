"""Chapter 3, registry: train two models on the dataset version, register both with their lineage,
promote the better one to production through a gate, and trace it back to its data and code."""

from __future__ import annotations

import json

from demo.chapter import Chapter, Context
from demo.runner import DemoError, Runner

MODEL = "digits"
GATE = "metrics.val_accuracy >= current.metrics.val_accuracy and metrics.val_accuracy > 0.7"
RECIPES = (
    {"lr": "0.01", "hidden": "16", "epochs": "6"},
    {"lr": "0.05", "hidden": "64", "epochs": "25"},
)


def run(context: Context) -> None:
    runner = context.runner
    dataset = context.refs.get("dataset", "digits@latest")
    trained = [train(runner, dataset, recipe) for recipe in RECIPES]
    runner.step("Compare the two runs side by side")
    runner.atelier("runs", "compare", *[t["run"] for t in trained])
    runner.step("Find the best version by validation accuracy, in one call")
    best = runner.atelier_json(
        "models", "search", "--model", MODEL, "--order-by", "metrics.val_accuracy desc", "--limit", "1"
    )[0]
    runner.info(f"best: {best['name']} (val_accuracy {best['metrics']['val_accuracy']:.3f})")
    promote(runner, trained, best["name"])
    runner.step("Lineage of the production model: back to the dataset version and the code commit")
    lineage = runner.atelier("models", "lineage", f"{MODEL}@production")
    if "trained on: projects/default/datasets/digits/versions/" not in lineage:
        raise DemoError("the production model's lineage does not reach its dataset version")
    runner.ok("the lineage names the dataset version, the run and the code commit")
    runner.step("What it would take to reproduce it")
    runner.atelier("models", "reproduce", f"{MODEL}@production", "--print")
    context.refs["model"] = f"{MODEL}@production"
    context.refs["model.other"] = next(t["model_version"] for t in trained if t["model_version"] != best["name"])


def train(runner: Runner, dataset: str, recipe: dict[str, str]) -> dict[str, str]:
    """Run the training script (a real process, as a researcher would) and return what it printed."""
    arguments = [f"--{key}={value}" for key, value in recipe.items()]
    runner.step(f"Train on {dataset} with {', '.join(arguments)}; the SDK logs params, metrics and the model")
    output = runner.python("-m", "demo.train_digits", f"--dataset={dataset}", *arguments)
    result: dict[str, str] = json.loads(output.strip().splitlines()[-1])
    runner.info(f"{result['model_version']}: val_accuracy {float(result['val_accuracy']):.3f} (run {result['run']})")
    return result


def promote(runner: Runner, trained: list[dict[str, str]], best: str) -> None:
    """Promote the weaker model first, then the better one through the gate; a later attempt to
    move production back to the weaker one is refused by the gate."""
    worse = next(t["model_version"] for t in trained if t["model_version"] != best)
    runner.step(f"Promote to production through the gate: {GATE}")
    runner.atelier("models", "promote", _ref(worse), "production", "--gate", GATE)
    runner.atelier("models", "promote", _ref(best), "production", "--gate", GATE)
    runner.step("Moving production back to the weaker version is refused by the gate")
    refused = runner.atelier_fails("models", "promote", _ref(worse), "production", "--gate", GATE)
    runner.ok(f"refused: {refused}")


def _ref(version: str) -> str:
    parts = version.split("/")
    return f"{parts[3]}@{parts[5]}"


CHAPTER = Chapter(
    title="Registry",
    summary="Train two models with the SDK, register them, promote the better one through a gate.",
    run=run,
)
