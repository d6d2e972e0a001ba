"""How an agent learns its node's GPUs: NVML on a real node, a declared inventory elsewhere.

Both implement `GpuDiscovery`, so machines without GPUs (tests, demos, laptops) run every code path
above it. A declared inventory is JSON, from a file or the `ATELIER_AGENT_INVENTORY` variable:

    {"cards": [{"model": "A100-80", "count": 4}, {"model": "T4"}],
     "nvlink": [[0, 1], [2, 3]]}

Each card entry takes `model` and optionally `count`, `memory_gib`, `compute_capability` (known
catalogue models fill those in), `healthy` and `mig`. Cards listed in one `nvlink` group are
NVLink-connected; other pairs are on one PCIe host bridge.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atelier.errors import InvalidArgument
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.scheduling.inventory import MAX_CARDS_PER_NODE

GIB = 1024**3
# The most memory a declared card may have.
MAX_CARD_MEMORY_GIB = 4096

# NVML topology levels (nvmlGpuTopologyLevel_t) -> link types.
_TOPOLOGY_LEVELS: dict[int, pb.LinkType.ValueType] = {
    0: pb.LINK_TYPE_SAME_BOARD,
    10: pb.LINK_TYPE_PCIE_SWITCH,
    20: pb.LINK_TYPE_PCIE_MULTI_SWITCH,
    30: pb.LINK_TYPE_HOST_BRIDGE,
    40: pb.LINK_TYPE_NUMA,
    50: pb.LINK_TYPE_SYSTEM,
}


@dataclass
class Inventory:
    """What discovery found: the cards, the links between them, and where it came from."""

    cards: list[pb.Card]
    links: list[pb.CardLink]
    source: str
    driver_version: str = ""


class GpuDiscovery(Protocol):
    """The one interface between the agent and the GPUs."""

    def inventory(self) -> Inventory:
        """Cards and topology, read once at registration."""
        ...

    def refresh(self) -> list[pb.Card]:
        """The cards now: free memory and health, for each heartbeat."""
        ...


CardSpec = Callable[[str], tuple[int, str] | None]
"""Catalogue lookup: model name -> (memory bytes, compute capability), None when unknown."""


class _CardEntry(BaseModel):
    """One entry of a declared inventory's `cards` (strict: a count written as text is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=MAX_CARDS_PER_NODE)
    memory_gib: float | None = Field(default=None, gt=0, le=MAX_CARD_MEMORY_GIB)
    compute_capability: str | None = Field(default=None, pattern=r"^[0-9]+\.[0-9]+$")
    healthy: bool = True
    mig: bool = False


class DeclaredInventory:
    """Cards declared in JSON; free memory is reported as total (nothing else uses them)."""

    def __init__(self, text: str, lookup: CardSpec, origin: str = "inventory") -> None:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"{origin} is not valid JSON: {error}") from error
        if not isinstance(document, dict):
            raise InvalidArgument(f'{origin} must be a JSON object like {{"cards": [{{"model": "A100-80"}}]}}')
        self._cards = _declared_cards(document.get("cards", []), lookup, origin)
        self._links = _declared_links(document.get("nvlink", []), len(self._cards), origin)

    @classmethod
    def from_file(cls, path: Path, lookup: CardSpec) -> DeclaredInventory:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise InvalidArgument(f"cannot read the inventory {path}: {reason}", metadata={"path": str(path)}) from None
        return cls(text, lookup, str(path))

    def inventory(self) -> Inventory:
        return Inventory([_copy(c) for c in self._cards], list(self._links), "declared")

    def refresh(self) -> list[pb.Card]:
        return [_copy(c) for c in self._cards]


def _copy(card: pb.Card) -> pb.Card:
    clone = pb.Card()
    clone.CopyFrom(card)
    return clone


def _entry(raw: Any, number: int, origin: str) -> _CardEntry:
    """Card entry `number` validated, or one line saying what is wrong with it."""
    try:
        return _CardEntry.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "entry"
        raise InvalidArgument(
            f"{origin}: card entry {number} ({raw!r}): {where}: {problem['msg']}",
            metadata={"field": f"cards[{number}].{where}"},
        ) from None


def _declared_cards(entries: Any, lookup: CardSpec, origin: str) -> list[pb.Card]:
    if not isinstance(entries, list):
        raise InvalidArgument(f"{origin}: 'cards' must be a list of card entries")
    cards: list[pb.Card] = []
    for number, raw in enumerate(entries):
        entry = _entry(raw, number, origin)
        model = entry.model
        known = lookup(model)
        memory = int(entry.memory_gib * GIB) if entry.memory_gib is not None else (known[0] if known else 0)
        capability = entry.compute_capability or (known[1] if known else "")
        if not memory or not capability:
            raise InvalidArgument(
                f"{origin}: card model {model!r} is not in the catalogue; give memory_gib and compute_capability"
            )
        if len(cards) + entry.count > MAX_CARDS_PER_NODE:
            raise InvalidArgument(f"{origin}: more than {MAX_CARDS_PER_NODE} cards declared on one node")
        for _ in range(entry.count):
            index = len(cards)
            cards.append(
                pb.Card(
                    index=index,
                    uuid=f"GPU-{uuid.uuid5(uuid.NAMESPACE_OID, f'{origin}/{index}/{model}')}",
                    model=model,
                    memory_total_bytes=memory,
                    memory_free_bytes=memory,
                    compute_capability=capability,
                    mig_enabled=entry.mig,
                    health=pb.CardHealth(healthy=entry.healthy, reason="" if entry.healthy else "declared unhealthy"),
                    pci_bus_id=f"00000000:{index + 1:02x}:00.0",
                )
            )
    return cards


def _declared_links(groups: Any, count: int, origin: str) -> list[pb.CardLink]:
    island: dict[int, int] = {}
    for number, group in enumerate(groups if isinstance(groups, list) else []):
        for index in group:
            if not isinstance(index, int) or not 0 <= index < count:
                raise InvalidArgument(
                    f"{origin}: nvlink group {group!r} names card {index!r}; cards are 0..{count - 1}"
                )
            island[index] = number
    links = []
    for a in range(count):
        for b in range(a + 1, count):
            same = a in island and island.get(a) == island.get(b)
            links.append(pb.CardLink(a=a, b=b, type=pb.LINK_TYPE_NVLINK if same else pb.LINK_TYPE_HOST_BRIDGE))
    return links


class NvmlDiscovery:
    """The node's real GPUs through nvidia-ml-py (`pynvml`)."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def inventory(self) -> Inventory:
        nvml = self._nvml
        cards = self.refresh()
        links = []
        for a in range(len(self._handles)):
            for b in range(a + 1, len(self._handles)):
                links.append(pb.CardLink(a=a, b=b, type=self._link(a, b)))
        return Inventory(cards, links, "nvml", _text(nvml.nvmlSystemGetDriverVersion()))

    def refresh(self) -> list[pb.Card]:
        return [self._card(index, handle) for index, handle in enumerate(self._handles)]

    def _card(self, index: int, handle: Any) -> pb.Card:
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        return pb.Card(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            model=_text(nvml.nvmlDeviceGetName(handle)),
            memory_total_bytes=int(memory.total),
            memory_free_bytes=int(memory.free),
            compute_capability=f"{major}.{minor}",
            mig_enabled=self._mig(handle),
            health=self._health(handle),
            pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        )

    def _mig(self, handle: Any) -> bool:
        try:
            current, _pending = self._nvml.nvmlDeviceGetMigMode(handle)
            return bool(current)
        except self._nvml.NVMLError:
            return False  # not a MIG-capable card

    def _health(self, handle: Any) -> pb.CardHealth:
        nvml = self._nvml
        health = pb.CardHealth(healthy=True)
        with contextlib.suppress(nvml.NVMLError):  # ECC off or unsupported (consumer cards)
            errors = nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            )
            health.uncorrected_ecc_errors = int(errors)
        try:
            corrected, uncorrected, pending, failed = nvml.nvmlDeviceGetRemappedRows(handle)
            health.remapped_rows = int(corrected + uncorrected)
            health.remapping_failed = bool(failed)
            if pending:
                health.healthy, health.reason = False, "row remapping pending: reset the card"
        except nvml.NVMLError:
            pass  # before Ampere
        if health.remapping_failed:
            health.healthy, health.reason = False, "row remapping failed"
        elif health.uncorrected_ecc_errors:
            health.healthy, health.reason = False, f"{health.uncorrected_ecc_errors} uncorrected ECC errors"
        return health

    def _link(self, a: int, b: int) -> pb.LinkType.ValueType:
        nvml = self._nvml
        if self._nvlinked(a, b):
            return pb.LINK_TYPE_NVLINK
        try:
            level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(self._handles[a], self._handles[b]))
        except nvml.NVMLError:
            return pb.LINK_TYPE_UNSPECIFIED
        return _TOPOLOGY_LEVELS.get(level, pb.LINK_TYPE_SYSTEM)

    def _nvlinked(self, a: int, b: int) -> bool:
        """NVLink between two cards, directly or through NVSwitch (P2P over NVLink works)."""
        nvml = self._nvml
        try:
            status = nvml.nvmlDeviceGetP2PStatus(self._handles[a], self._handles[b], nvml.NVML_P2P_CAPS_INDEX_NVLINK)
            return bool(status == nvml.NVML_P2P_STATUS_OK)
        except nvml.NVMLError:
            pass  # older drivers: look at the links themselves
        target = _text(nvml.nvmlDeviceGetPciInfo(self._handles[b]).busId).lower()
        for link in range(nvml.NVML_NVLINK_MAX_LINKS):
            try:
                if not nvml.nvmlDeviceGetNvLinkState(self._handles[a], link):
                    continue
                remote = _text(nvml.nvmlDeviceGetNvLinkRemotePciInfo(self._handles[a], link).busId).lower()
            except nvml.NVMLError:
                break  # no more links on this card
            if remote == target:
                return True
        return False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
