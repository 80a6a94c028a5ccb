"""L2-SP's penalty, forward and backward, on a real model's parameters: the fused form against the two-op form.

    python bench/l2sp_penalty.py [--model real:smollm2-135m] [--rounds 3]

The penalty Σ‖θ − θ*‖² over every trainable tensor, as ``regularizers/l2sp.py`` computes it now
(``mse_loss(θ, θ*, reduction="sum")`` per tensor) and as it did before (``(θ − θ*).pow(2).sum()``), alternated
in one process at one torch thread; prints each one's median seconds, their ratio, and whether the values and
the gradients are equal to the bit. θ* is θ moved by 1e-3, so the distance is not zero.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from forgetless.machine import machine_stamp
from forgetless.models import load_causal_lm
from forgetless.testbed.specs import resolve_spec


def main() -> None:
    """Alternate the two forms and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="real:smollm2-135m")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_causal_lm(resolve_spec(args.model), torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone().add_(1e-3) for p in params]
    print(f"model: {args.model}, {sum(p.numel() for p in params) / 1e6:.1f} M parameters; machine: "
          f"{machine_stamp()['summary']}; load average before: {os.getloadavg()}")

    def two_op() -> torch.Tensor:
        return torch.stack([(p - a).pow(2).sum() for p, a in zip(params, anchors)]).sum()

    def fused() -> torch.Tensor:
        return torch.stack([F.mse_loss(p, a, reduction="sum") for p, a in zip(params, anchors)]).sum()

    forms: dict[str, Callable[[], torch.Tensor]] = {"two-op (before)": two_op, "mse_loss (now)": fused}
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    values: dict[str, float] = {}
    grads: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.rounds):
        for name, form in forms.items():
            for p in params:
                p.grad = None
            start = time.perf_counter()
            value = form()
            value.backward()
            seconds[name].append(time.perf_counter() - start)
            values[name], grads[name] = value.item(), [p.grad for p in params]
    for name in forms:
        print(f"{name:<16} median {statistics.median(seconds[name]):.2f} s (forward + backward)")
    before, now = (statistics.median(seconds[name]) for name in forms)
    same = all(torch.equal(a, b) for a, b in zip(*grads.values()))
    print(f"ratio before / now: {before / now:.2f}x; same value: {len(set(values.values())) == 1}; "
          f"same gradients: {same}; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
