"""The peers' servers, each run in the peer's own venv: PyTriton with both models, LitServe with one."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from .config import INSTANCES, MAX_BATCH, SHAPES


def pytriton_main(spec: str) -> None:
    import numpy as np
    import torch
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    args = json.loads(spec)
    torch.set_num_threads(1)
    config = TritonConfig(
        grpc_port=args["grpc_port"], http_port=args["http_port"], metrics_port=args["metrics_port"], log_verbose=0
    )
    with Triton(config=config) as triton:
        for name in SHAPES:
            functions = []
            for _ in range(INSTANCES):
                model = torch.jit.load(str(Path(args["models"]) / f"{name}.pt"))  # type: ignore[no-untyped-call]

                @batch  # type: ignore[untyped-decorator]
                def infer(input: Any, model: Any = model) -> dict[str, Any]:  # noqa: A002 - the tensor's name
                    with torch.no_grad():
                        return {"output": model(torch.from_numpy(input)).numpy()}

                functions.append(infer)
            triton.bind(
                model_name=name,
                infer_func=functions,
                inputs=[Tensor(name="input", dtype=np.float32, shape=SHAPES[name])],
                outputs=[Tensor(name="output", dtype=np.float32, shape=(10,))],
                config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
                strict=False,
            )
        triton.serve()


def litserve_main(spec: str) -> None:
    import litserve as ls

    args = json.loads(spec)
    api = make_litserve_api()(max_batch_size=MAX_BATCH, batch_timeout=0.0005)
    api.path, api.name = args["path"], args["model"]  # instance attributes travel to the worker processes
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=INSTANCES)
    server.run(host="127.0.0.1", port=args["port"], log_level="warning", generate_client_file=False)


def make_litserve_api() -> Any:
    """LitServe's API class, made once at module level: its worker processes unpickle it by name."""
    global LitServeAPI  # noqa: PLW0603 - LitServe is only importable in its own venv
    if LitServeAPI is not None:
        return LitServeAPI
    import litserve as ls
    import numpy as np
    import torch

    class API(ls.LitAPI):  # type: ignore[misc]
        path = ""
        name = ""

        def setup(self, device: str) -> None:
            torch.set_num_threads(1)
            self.model = torch.jit.load(self.path)  # type: ignore[no-untyped-call]

        def decode_request(self, request: dict[str, Any]) -> Any:
            raw = base64.b64decode(request["input"])
            return np.frombuffer(raw, dtype=np.float32).reshape(request["shape"])

        def batch(self, inputs: list[Any]) -> Any:
            return np.stack(inputs)

        def predict(self, x: Any) -> Any:
            with torch.no_grad():
                return self.model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

        def unbatch(self, output: Any) -> list[Any]:
            return list(output)

        def encode_response(self, output: Any) -> dict[str, Any]:
            return {"output": output.tolist(), "model": self.name}

    # LitServe turns these annotations into FastAPI's body and response types; without them it passes the
    # parsed JSON as is (as its examples do).
    API.decode_request.__annotations__.pop("request")
    API.encode_response.__annotations__.pop("return")
    API.__qualname__ = API.__name__ = "LitServeAPI"
    LitServeAPI = API
    return API


LitServeAPI: Any = None
if os.environ.get("BENCH_LITSERVE_API") == "1":  # a LitServe worker unpickling the API: define it first
    make_litserve_api()
