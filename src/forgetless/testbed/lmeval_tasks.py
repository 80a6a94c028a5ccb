"""lm-eval task YAMLs for a built testbed, so ``lm_eval`` runs its tasks offline.

Needs the optional extra (``pip install 'forgetless[lmeval]'``): the YAML writer lives
with the adapter in ``forgetless.evaluation.lmeval``, which imports ``lm_eval``.
"""

from __future__ import annotations

from pathlib import Path

from forgetless.evaluation.cloze import build_cloze, write_cloze
from forgetless.data.texts import read_texts
from forgetless.testbed.build import build_testbed
from forgetless.testbed.tasks import FAMILIES


def write_testbed_tasks(out_dir: str | Path, preset: str = "tiny", cloze_items: int = 200, seed: int = 0) -> Path:
    """lm-eval YAMLs for a built testbed: ``forgetless_cloze`` (the same items ``forgetless
    eval`` builds from ``general/heldout.jsonl``) and one ``forgetless_<family>`` per task's test split."""
    from forgetless.evaluation.lmeval import write_task_yamls  # imported here: the lm-eval extra is optional

    testbed = build_testbed(preset)
    out = Path(out_dir)
    cloze = write_cloze(build_cloze(read_texts(testbed.general_heldout), n_items=cloze_items, seed=seed),
                        out / "cloze.jsonl")
    return write_task_yamls(out, cloze, {name: testbed.task(name, "test") for name in FAMILIES})
