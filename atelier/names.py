"""Resource names (AIP-122) and the short references people type, parsed in one place.

Full names: `projects/{project}/datasets/{dataset}/versions/{version}`. Short forms:
`digits@v2`, `vision/digits@production`, `digits@latest`, `digits@3fa9c1` (digest prefix); a
missing `@REF` means `latest`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from atelier.errors import InvalidArgument

ID_PATTERN = "[a-z0-9][a-z0-9._-]*"
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_id(kind: str, value: str) -> str:
    """Return `value` if it is a valid resource id, else raise InvalidArgument naming it."""
    if not _ID.fullmatch(value or ""):
        raise InvalidArgument(
            f"invalid {kind} id {value!r}: ids match {ID_PATTERN} and have at most 63 characters",
            metadata={"field": f"{kind}_id", "value": value},
        )
    return value


def parse_name(name: str, pattern: str, field: str = "name", wildcard: bool = False) -> dict[str, str]:
    """Match `name` against a pattern like `projects/{project}/datasets/{dataset}`.

    Returns the variables; raises InvalidArgument naming the value and the expected form. With
    `wildcard`, a segment may be `-` (AIP-159: every collection of that kind).
    """
    parts = name.split("/")
    template = pattern.split("/")
    values: dict[str, str] = {}
    if len(parts) == len(template):
        for part, tmpl in zip(parts, template, strict=True):
            if tmpl.startswith("{"):
                values[tmpl[1:-1]] = part
            elif part != tmpl:
                break
        else:
            for key, value in values.items():
                if wildcard and value == "-":
                    continue
                if key in ("version", "ref", "artifact"):
                    if not _REF.fullmatch(value):
                        break
                elif not _ID.fullmatch(value):
                    break
            else:
                return values
    raise InvalidArgument(
        f"invalid {field} {name!r}: expected {pattern} with ids matching {ID_PATTERN}",
        metadata={"field": field, "value": name},
    )


def default_project() -> str:
    """The project commands and runs use when none is given: `$ATELIER_PROJECT`, else `default` (an
    empty variable counts as unset)."""
    return os.environ.get("ATELIER_PROJECT", "").strip() or "default"


def project_name(project: str) -> str:
    return f"projects/{project}"


def dataset_name(project: str, dataset: str) -> str:
    return f"projects/{project}/datasets/{dataset}"


def version_name(project: str, dataset: str, version: str) -> str:
    return f"projects/{project}/datasets/{dataset}/versions/{version}"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset plus a version reference (`v3`, `latest`, a tag or a digest prefix)."""

    project: str
    dataset: str
    ref: str = "latest"

    @property
    def dataset_name(self) -> str:
        return dataset_name(self.project, self.dataset)

    @property
    def version_name(self) -> str:
        return version_name(self.project, self.dataset, self.ref)

    def __str__(self) -> str:
        return f"{self.project}/{self.dataset}@{self.ref}"


def parse_dataset_ref(text: str, default_project: str, kind: str = "dataset") -> DatasetRef:
    """Parse `[PROJECT/]DATASET[@REF]` or a full version resource name (`kind` names the id in errors)."""
    if text.startswith("projects/"):
        if "/versions/" in text:
            v = parse_name(text, "projects/{project}/datasets/{dataset}/versions/{version}")
            return DatasetRef(v["project"], v["dataset"], v["version"])
        d = parse_name(text, "projects/{project}/datasets/{dataset}")
        return DatasetRef(d["project"], d["dataset"])
    body, _, ref = text.partition("@")
    project, _, dataset = body.rpartition("/")
    project = project or default_project
    validate_id("project", project)
    validate_id(kind, dataset)
    if "@" in text and not _REF.fullmatch(ref):
        kinds = "vN, latest or an alias" if kind == "model" else "vN, latest, a tag or a digest prefix"
        raise InvalidArgument(
            f"invalid version reference {ref!r} in {text!r}: use {kinds}", metadata={"field": "ref", "value": text}
        )
    return DatasetRef(project, dataset, ref or "latest")


@dataclass(frozen=True)
class ModelRef:
    """A registered model plus a version reference (`v3`, `latest` or an alias)."""

    project: str
    model: str
    ref: str = "latest"

    @property
    def model_name(self) -> str:
        return f"projects/{self.project}/models/{self.model}"

    @property
    def version_name(self) -> str:
        return f"{self.model_name}/versions/{self.ref}"

    def __str__(self) -> str:
        return f"{self.project}/{self.model}@{self.ref}"


def parse_model_ref(text: str, default_project: str) -> ModelRef:
    """Parse `[PROJECT/]MODEL[@REF]` or a full model (version) resource name."""
    if text.startswith("projects/"):
        if "/versions/" in text:
            v = parse_name(text, "projects/{project}/models/{model}/versions/{version}")
            return ModelRef(v["project"], v["model"], v["version"])
        m = parse_name(text, "projects/{project}/models/{model}")
        return ModelRef(m["project"], m["model"])
    ref = parse_dataset_ref(text, default_project, kind="model")
    return ModelRef(ref.project, ref.dataset, ref.ref)


def project_of(name: str) -> str:
    """The project id of a resource name (`projects/{project}/...`), empty if it has none (no checks:
    for labelling, not for access decisions)."""
    parts = name.split("/", 2)
    return parts[1] if len(parts) > 1 and parts[0] == "projects" else ""
