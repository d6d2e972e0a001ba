"""Running a loaded torch model on a batch: numpy in, numpy out, on the deployment's device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atelier.errors import Internal
from services.inference.signature import Signature
from services.inference.tensors import from_torch, to_torch

Array = np.ndarray[Any, Any]


@dataclass
class ModelRunner:
    """A TorchScript module or an exported program's module, ready to run in inference mode."""

    module: Any
    device: str
    signature: Signature
    _call: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A TorchScript module without compiled hooks is called through its `forward`: `nn.Module.__call__`
        # only adds the Python hook machinery (~10 us a call, a tenth of a small model's run). Any other
        # module keeps `__call__` (an exported program's module checks its inputs in a pre-hook).
        import torch

        module = self.module
        plain = (
            isinstance(module, torch.jit.ScriptModule)
            and not module._c._get_forward_hooks()
            and not module._c._get_forward_pre_hooks()
        )
        self._call = module.forward if plain else module

    def run(self, inputs: Sequence[Array]) -> list[Array]:
        """Run once: inputs in signature order (writable, contiguous), outputs in signature order."""
        import torch

        tensors = []
        for spec, array in zip(self.signature.inputs, inputs, strict=True):
            tensor = to_torch(spec.datatype, array)
            tensors.append(tensor if self.device == "cpu" else tensor.to(self.device, non_blocking=True))
        with torch.inference_mode():
            result = self._call(*tensors)
        outputs = list(result) if isinstance(result, tuple | list) else [result]
        if len(outputs) != len(self.signature.outputs):
            raise Internal(
                f"the model returned {len(outputs)} outputs; its signature declares {len(self.signature.outputs)} "
                f"({', '.join(t.name for t in self.signature.outputs)})"
            )
        return [from_torch(spec.datatype, out) for spec, out in zip(self.signature.outputs, outputs, strict=True)]
