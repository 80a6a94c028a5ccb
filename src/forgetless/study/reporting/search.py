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


def unlearned_rungs(record: dict[str, Any], floor: float | None) -> list[str]:
    """Warnings for rungs where halving stopped trials before any of them had learned the task: no trial's validation
    exact match above the constant-answer ``floor`` (the test set's; None: not known, no warning). Exact match
    at chance says nothing of who will learn, and the validation loss that breaks its ties favours fast early
    learners (docs/tuning.md, "Search against the exhaustive grid")."""
    if floor is None:
        return []
    out = []
    for halving in record.get("halvings", []):
        best = max(t["validation"] for t in halving["trials"])
        if best > floor:
            continue
        stopped = [f"#{t['number']}" for t in halving["trials"] if not t["kept"]]
        out.append(f"at step {halving['step']}, where halving stopped trial{'s' if len(stopped) > 1 else ''} "
                   f"{', '.join(stopped)}, no trial scored above the constant-answer floor ({floor:.1%} on the test "
                   f"set; the best {best:.1%} on validation): who went on was decided by chance-level exact match and "
                   "validation loss, which favour fast early learners, and a setting stopped there may have learned "
                   "best; a later first rung (fewer `search.rungs`) waits for the task to be learned, at more steps "
                   "(docs/tuning.md)")
    return out


def search_body(rows: list[Row]) -> str | None:
    """The markdown of the search section, or None when the study tuned nothing."""
    searches: dict[str, dict[str, Any]] = (rows[0].get("searches") or {}) if rows else {}
    if not searches:
        return None
    floor = rows[0].get("majority_accuracy")
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
        lines += [f"- warning: {warning}" for warning in record.get("edges", []) + unlearned_rungs(record, floor)]
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
