"""The study's LM-Cocktail stage: train peer-domain models, merge them with the base and the fine-tuned model.

LM-Cocktail (Xiao et al., arXiv 2311.13534) weighs candidates by softmax(-L/T) of
their loss on a few target-domain examples, then mixes the result with the
fine-tuned model by alpha. The weights and losses go into the results row, so the
report shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetless.study.cells import cell, model_fingerprint
from forgetless.study.config import MethodConfig


def run_cocktail(ctx: Any, trained: list[tuple[str, str, MethodConfig, float, int]]) -> None:
    """Train the configured peers (cached cells), merge, evaluate and add one ``cocktail`` row."""
    from forgetless.data import data_hash
    from forgetless.merging.cocktail import Cocktail
    from forgetless.merging.engine import merge_checkpoints
    from forgetless.study.runner import _evaluate, _load, _row, _train, resolve_data

    cfg = ctx.cfg.cocktail
    wanted = cfg.method or ctx.cfg.methods[0].name
    row_id, ft_path, method, lr, seed = next(t for t in trained if t[2].name == wanted)
    peers = []
    for peer in cfg.peers:
        peer_method = MethodConfig(name=f"peer-{peer.name}", learning_rates=[peer.learning_rate])
        _, path = _train(ctx, peer_method, peer.learning_rate, ctx.cfg.seeds[0], data=peer.data)
        peers.append((peer.name, path))
    # Target examples come from validation data: the test set stays untouched.
    examples = resolve_data(ctx.cfg.data.validation or ctx.cfg.data.train)
    names = ["base", row_id, *(name for name, _ in peers)]
    paths = [ctx.base_path, ft_path, *(path for _, path in peers)]
    spec = {"models": [model_fingerprint(p) for p in paths], "examples": data_hash(examples),
            **cfg.model_dump(exclude={"peers", "method"})}
    unit = cell(ctx.root / "cells", "cocktail", spec)
    merged = unit.dir / "model"
    info_path = unit.dir / "weights.json"
    if not info_path.is_file():
        ctx.progress.print_fn(f"[study] LM-Cocktail over {', '.join(names)}")
        rule = Cocktail(examples=Path(examples), finetuned=1, temperature=cfg.temperature, alpha=cfg.alpha,
                        num_examples=cfg.examples)
        coefficients = rule.coefficients([Path(p) for p in paths])
        merge_checkpoints(paths, coefficients.values, merged, config_from=1, overwrite=True,
                          record={"rule": "cocktail", **coefficients.info}, progress=False)
        from forgetless.atomic import write_json

        write_json(info_path, {"names": names, **coefficients.info, "coefficients": coefficients.values})
    import json

    info = json.loads(info_path.read_text())
    m = _evaluate(ctx, {"cocktail": unit.key}, "LM-Cocktail", lambda: _load(str(merged)))
    _row(ctx, f"cocktail/{row_id}", f"cocktail ({method.name} lr={lr:g} + {len(peers)} peers)", "cocktail", m,
         parent=row_id, alpha=cfg.alpha, weights=dict(zip(info["names"], info["cocktail_weights"])),
         losses=dict(zip(info["names"], info["losses"])), coefficients=dict(zip(info["names"], info["coefficients"])))
