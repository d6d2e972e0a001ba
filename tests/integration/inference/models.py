"""Small torch models the inference tests register and serve."""

from __future__ import annotations

import torch


class Affine(torch.nn.Module):
    """FP32 [B, 4] -> FP32 [B, 3], with fixed weights."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.linear = torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 4, generator=generator))
            self.linear.bias.copy_(torch.randn(3, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class Echo(torch.nn.Module):
    """Returns each input unchanged (a copy), whatever its dtype: a round trip of every datatype."""

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x.clone() for x in inputs)


ECHO_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)


def echo_example(batch: int = 2) -> tuple[torch.Tensor, ...]:
    """One tensor of each registrable dtype, shape [batch, 3]."""
    base = torch.arange(batch * 3).reshape(batch, 3)
    return tuple((base % 2 == 0) if d == torch.bool else base.to(d) for d in ECHO_DTYPES)


class Doubler(torch.nn.Module):
    """FP32 [B, N] -> FP32 [B, N], any N: requests of different widths cannot share a batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class Picky(torch.nn.Module):
    """FP32 [B, 2] -> FP32 [B, 2], but fails on any negative value: a request that breaks its batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("negative input")
        return x + 1


class Recurrent(torch.nn.Module):
    """A tiny recurrent cell: (x [B, 3], h [B, 5]) -> (y [B, 2], next h [B, 5])."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(11)
        self.wx = torch.nn.Linear(3, 5)
        self.wh = torch.nn.Linear(5, 5, bias=False)
        self.out = torch.nn.Linear(5, 2)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = torch.tanh(self.wx(x) + self.wh(h))
        return self.out(state), state
