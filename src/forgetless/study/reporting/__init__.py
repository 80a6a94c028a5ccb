"""Reporting a study: selection, verdicts, claims, tables and plots, made from result rows alone
(``forgetless.study.rows``); nothing here imports ``forgetless.study.running``."""
