"""Tuning: each study method's settings searched with successive halving on the same budget (docs/tuning.md).

- ``space``: what a tuned method searches (``learning_rates: auto``, ``search:``) and the study's budget;
- ``halving``: Optuna's seeded proposals and its successive-halving rule, the best checkpoint (pure, no torch);
- ``cells``: a trial trained in segments, one cached cell per kept checkpoint;
- ``report``: the report's search section;
- ``cli``: ``forgetless tune`` (one method outside a study).

The search stage itself (``forgetless.study.stages.search``) runs the rungs on the study's executor.
"""
