"""Tuning: each study method's settings searched with successive halving on the same budget (docs/tuning.md).

- ``space``: what a tuned method searches (``learning_rates: auto``, ``search:``) and the study's budget;
- ``halving``: Optuna's seeded proposals and its successive-halving rule, the best checkpoint (pure, no torch);
- ``cli``: ``forgetless tune`` (one method outside a study).

The search's cells are ``forgetless.study.running.search_cells`` (a trial trained in segments), its stage
``forgetless.study.running.stages.search`` (the rungs run on the study's executor), its report section
``forgetless.study.reporting.search``.
"""
