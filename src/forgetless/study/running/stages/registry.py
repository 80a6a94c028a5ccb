"""The study's stages, in the order they run and their rows appear in ``results.jsonl``.

Adding a stage: one file in this package (see ``forgetless.study.running.stages``) and one line here.
"""

from __future__ import annotations

from forgetless.study.running.stages import Stage
from forgetless.study.running.stages.base_model import BaseStage
from forgetless.study.running.stages.cocktail_sweep import CocktailStage
from forgetless.study.running.stages.search import SearchStage
from forgetless.study.running.stages.sweeps import SweepStage
from forgetless.study.running.stages.trained import TrainedStage

STAGES: tuple[Stage, ...] = (
    BaseStage(),  # first: every later row is compared to the base's measurements
    TrainedStage(),
    SearchStage(),  # tuned methods: their searches ran before the graph (runner.run_study); rows of the choices
    SweepStage(),
    CocktailStage(),  # waits for the sweeps' cells: without peers its points are WiSE-FT's
)
