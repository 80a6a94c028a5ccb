"""The report's search section: each tuned method's trials, its chosen settings and edge-of-range warnings.

Read from the base row's ``searches`` (``forgetless.study.running.stages.search``): every
trial's settings, validation exact match and forgetting (on the learning curve's
slices, at its best checkpoint within the budget, else its last), and the steps it
trained before successive halving stopped it.
"""

from __future__ import annotations

from typing import Any

from forgetless.study.rows import Row


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]} {_value(v)}" for key, v in settings.items())


def _none_within(record: dict[str, Any]) -> str:
    """What was tried when no trial stayed within the budget, and where to look next: only the settings
    proposed were tried, not the whole range."""
    trials = [t for t in record["trials"] if t["forgetting"] is not None]
    text = f"None of its {len(record['trials'])} settings did"
    if trials:
        least = min(trials, key=lambda t: t["forgetting"])
        text += (f" (the least forgetting at a trial's last checkpoint: {least['forgetting']:+.3f}, trial "
                 f"#{least['number']} after {least['steps']} steps)")
    rates = sorted(t["settings"]["learning_rate"] for t in record["trials"] if "learning_rate" in t["settings"])
    if rates:
        text += (f"; the learning rates tried span {rates[0]:.3g} to {rates[-1]:.3g} of the range searched: "
                 "lower ones (`search.learning_rate.low`), more trials or a wider budget may find one")
    return text + "."


def search_body(rows: list[Row]) -> str | None:
    """The markdown of the search section, or None when the study tuned nothing."""
    searches: dict[str, dict[str, Any]] = (rows[0].get("searches") or {}) if rows else {}
    if not searches:
        return None
    totals = {record["steps"] for record in searches.values()}
    first = next(iter(searches.values()))
    lines = [f"Each tuned method got the same budget: {len(first['trials'])} settings proposed by a seeded Optuna "
             f"sampler, halved by {first['reduction']} (Optuna's successive halving) at steps "
             f"{', '.join(str(s) for s in first['rungs'])}; "
             + (f"{totals.pop()} training steps per method." if len(totals) == 1 else
                "training steps per method: " + ", ".join(f"{k} {r['steps']}" for k, r in searches.items()) + " "
                "(a diverged trial stopped early).")
             + " A trial's scores are at its best checkpoint within the budget (else its last): validation exact "
             "match on the learning curve's slice, forgetting as the curve's held-out loss minus step 0's "
             f"(nats/token); the kept model is the best checkpoint of all trials within the budget of "
             f"{first['budget']:g}."]
    for name, record in searches.items():
        space = "; ".join(f"{key} {rng}" for key, rng in record["space"].items())
        chosen = record.get("chosen")
        lines += ["", f"**`{name}`**: searched {space}; {record['steps']} steps in "
                      f"{record.get('seconds', 0.0) / 60:.1f} min of training."]
        if chosen is None:
            done = "finished" if record.get("finished", True) else "unfinished (rerun the study to resume it)"
            lines.append(f"The search ({done}) kept no checkpoint within the forgetting budget, so no tuned model of "
                         f"this method is reported. {_none_within(record)}")
        else:
            lines.append(f"Chosen: trial #{chosen['trial']} at step {chosen['step']}: {_settings(chosen['settings'])} "
                         f"(validation {chosen['validation']:.1%}, forgetting {chosen['forgetting']:+.3f}).")
        lines += [f"- warning: {warning}" for warning in record.get("edges", [])]
        lines += ["", "| trial | settings | steps | validation EM | forgetting | note |", "|---|---|---|---|---|---|"]
        for trial in record["trials"]:
            notes = ["diverged" if trial.get("diverged") else "chosen" if chosen and chosen["trial"] == trial["number"]
                     else "stopped by halving" if trial["steps"] < record["rungs"][-1] else "",
                     "over the budget" if (trial["forgetting"] or 0.0) > record["budget"] else ""]
            note = "; ".join(n for n in notes if n)
            validation = "-" if trial["validation"] is None else f"{trial['validation']:.1%}"
            forgetting = "-" if trial["forgetting"] is None else f"{trial['forgetting']:+.3f}"
            lines.append(f"| #{trial['number']} | {_settings(trial['settings'])} | {trial['steps']} | {validation} | "
                         f"{forgetting} | {note} |")
    return "\n".join(lines)
