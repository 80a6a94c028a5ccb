"""The study report: report.md and a self-contained report.html, built from results.jsonl only.

Nothing here measures anything: every number and picture is derived from the rows
of ``results.jsonl``, so the report can be rebuilt (``forgetless report DIR``) and
always agrees with the results file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from forgetless.atomic import write_json, write_text
from forgetless.data.errors import DataError
from forgetless.data.text import decode_utf8
from forgetless.machine import machine_stamp
from forgetless.study.reporting.claims import seed_claims
from forgetless.study.reporting.cocktail_curves import cocktail_sections, headline_cocktails
from forgetless.study.reporting.benchmarks import benchmark_table, on_axis
from forgetless.study.reporting.frontier import pareto_front
from forgetless.study.reporting.paired import difference
from forgetless.study.reporting.plots import plot_alpha_curves, plot_frontier, plot_learning_curves
from forgetless.study.reporting.search import search_body
from forgetless.study.rows import Group, Row, RowKind, groups
from forgetless.study.reporting.selection import best_on_validation, choose_alpha, choose_learning_rates
from forgetless.study.reporting.verdicts import compare, curve_note, decide


def read_rows(root: Path) -> list[Row]:
    """The rows of ``root/results.jsonl``.

    Raises:
        DataError: no such file, or a line that is not a JSON object (naming the file and the line).
    """
    path = root / "results.jsonl"
    if not path.is_file():
        raise DataError(path, None, None, "no such file; expected a study directory that forgetless study wrote")
    rows = []
    # split("\n"), not splitlines(): a generated example may hold U+2028, which JSON leaves unescaped.
    for number, line in enumerate(decode_utf8(path.read_bytes(), path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            detail = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            raise DataError(path, f"line {number}", None, f"expected a study result row, got invalid JSON "
                            f"({detail})") from None
        if not isinstance(row, dict):
            raise DataError(path, f"line {number}", None, f"expected a study result row, got {type(row).__name__}")
        rows.append(row)
    return rows


def _ci(value: float, ci: list[float], fmt: str) -> str:
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def _has_items(rows: list[Row]) -> bool:
    """Whether the rows carry per-item scores (results written before they did cannot be judged)."""
    return all("items" in r for r in rows)


def headline_table(rows: list[Row]) -> list[list[str]]:
    """The trade-off table of the papers: one row per trained model; the learning rate chosen on validation marked.

    Validation exact match is what the study chooses on; test exact match, gain and
    forgetting are the estimates for the chosen models.
    """
    chosen = {r["id"] for g in choose_learning_rates(rows).values() for r in g.rows}
    # LM-Cocktail's alpha curve is in its own section; the headline shows its point nearest alpha 0.5.
    trained = [r for r in rows if r["kind"] in (RowKind.BASE, RowKind.TRAINED)] + headline_cocktails(rows)
    best_general = min((r["general_nats_per_token"] for r in trained if r["kind"] != RowKind.BASE), default=None)
    table = [["model", "lr", "chosen", "validation EM", "test EM", "general nats/tok", "gain [95% CI]",
              "forgetting [95% CI]"]]
    for r in trained:
        general = f"{r['general_nats_per_token']:.3f}"
        if r["kind"] != RowKind.BASE and r["general_nats_per_token"] == best_general:
            general = f"**{general}**"
        lr = f"{r['learning_rate']:g}" if r.get("learning_rate") else "-"
        val = f"{r['validation_accuracy']:.1%}" if r.get("validation_accuracy") is not None else "-"
        table.append([r["label"], lr, "yes" if r["id"] in chosen else "", val, f"{r['domain_accuracy']:.1%}", general,
                      _ci(r["gain"], r["gain_ci"], "+.1%"), _ci(r["forgetting"], r["forgetting_ci"], "+.3f")])
    return table


def recommendation(rows: list[Row], budget: float, resamples: int = 1000) -> str:
    """A plain-language answer: ship X only where the test set confirms the validation choice, else why not."""
    if not _has_items(rows):
        return ("**No recommendation.** These results carry no per-item scores, so no choice can be made on "
                "validation or checked with a paired interval; rerun the study.")
    decision = decide(rows, budget, resamples)
    pick = decision.ship
    if pick is None or decision.gain is None:
        return " ".join(["**No trained model demonstrably gains.**", *(r for r in decision.reasons if r)])
    seed = ""
    if len(pick.rows) > 1:  # the configuration was chosen on its mean; ship its best seed on validation
        best = max(pick.rows, key=lambda r: r.get("validation_accuracy") or 0.0)
        seed = f" (over {len(pick.rows)} seeds; ship seed {best.get('seed')}, the best on validation)"
    lines = [f"**Ship `{pick.label}`** ({pick.kind}){seed}, chosen on validation: {decision.choice.reason}. On the "
             f"test set it scores {pick.mean('domain_accuracy'):.1%}: gain over the base {decision.gain.text('+.1%')}"
             + (f", over the constant-answer floor {decision.floor.text('+.1%')}" if decision.floor else "")
             + f"; its general loss is {pick.mean('forgetting'):+.3f} nats/token against the base."]
    sft = best_on_validation([g for g in groups(rows, RowKind.TRAINED) if _plain_sft(g)])
    if sft is not None and sft.id != pick.id:
        domain, d = compare(pick, sft, "test", resamples)
        general, f = compare(pick, sft, "general", resamples)
        lines.append(f"Against plain SFT at its validation-chosen learning rate (`{sft.label}`): domain EM "
                     f"{d.text('+.1%')} ({_WORDS[domain]}), general loss {(-f.estimate):+.3f} "
                     f"[{-f.high:+.3f}, {-f.low:+.3f}] nats/token ({_WORDS_GENERAL[general]}).")
    return " ".join(lines)


_WORDS = {"win": "better", "loss": "worse", "indistinguishable": "indistinguishable"}
_WORDS_GENERAL = {"win": "forgets less", "loss": "forgets more", "indistinguishable": "indistinguishable"}


def _plain_sft(group: Group) -> bool:
    return group.get("family") == "sft" or bool(group.get("plain_sft"))


def methods_table(rows: list[Row], resamples: int = 1000) -> list[list[str]] | None:
    """Each method at its validation-chosen learning rate against plain SFT at its own.

    A difference is a win (or loss) only when its paired interval excludes 0.
    """
    chosen = choose_learning_rates(rows)
    sft = best_on_validation([g for g in chosen.values() if _plain_sft(g)])
    if sft is None or len(chosen) < 2:
        return None
    table = [["method (chosen lr)", "domain EM vs SFT [95% CI]", "domain", "general loss vs SFT [95% CI]", "general"]]
    for name, group in chosen.items():
        if group.id == sft.id:
            continue
        domain, d = compare(group, sft, "test", resamples)
        general, f = compare(group, sft, "general", resamples)
        table.append([f"{name} ({group.label})", d.text("+.1%"), _WORDS[domain],
                      f"{-f.estimate:+.3f} [{-f.high:+.3f}, {-f.low:+.3f}]", _WORDS_GENERAL[general]])
    return table


def overadaptation_lines(rows: list[Row], resamples: int = 1000) -> list[str]:
    """For every swept model, both curves: the validation-chosen interior alpha against the fine-tuned model on test."""
    lines = []
    for parent in groups(rows, RowKind.TRAINED):
        parts = []
        for kind, name in ((RowKind.INTERPOLATION, "weights"), (RowKind.ENSEMBLE, "outputs")):
            point = choose_alpha(rows, parent, kind)
            if point is None:
                continue
            d = difference(point, parent, "test", resamples)
            verdict = {"win": "**beats it**", "loss": "worse", "indistinguishable": "indistinguishable"}[d.verdict]
            parts.append(f"{name}: alpha {float(point.get('alpha')):g} scores {point.mean('domain_accuracy'):.1%} "
                         f"against {parent.mean('domain_accuracy'):.1%}, {d.text('+.1%')} ({verdict})")
        if parts:
            lines.append(f"- `{parent.label}`: " + "; ".join(parts))
    return lines


def claims_table(rows: list[Row], resamples: int = 1000) -> list[list[str]]:
    """One row per seed claim: the claim, its verdict and the interval it rests on."""
    table = [["claim", "verdict", "evidence (95% paired interval)"]]
    if not _has_items(rows):
        return [*table, ["every claim", "not run", "the results carry no per-item scores; rerun the study"]]
    for claim in seed_claims(rows, resamples):
        verdict = f"**{claim.verdict}**" if claim.verdict in ("reproduced", "not reproduced") else claim.verdict
        table.append([claim.claim, verdict, claim.evidence])
    return table


def data_note(rows: list[Row]) -> str:
    """Where the validation set came from, the test set's constant-answer floor, and exact-duplicate prompts."""
    base = next((r for r in rows if r["kind"] == RowKind.BASE), {})
    notes = []
    if base.get("validation_source"):
        notes.append(f"Choices (model, learning rate, alpha) are made on validation: {base['validation_source']}, "
                     f"{base.get('validation_n', 0)} examples scored per model; test numbers are estimates for the "
                     f"chosen models ({base.get('domain_n', 0)} test examples).")
    if "majority_accuracy" in base:
        notes.append(f"The floor of this test set: always answering `{base['majority_answer']}` scores "
                     f"{base['majority_accuracy']:.1%}; a domain score below it reflects the answer format and prior, "
                     "not the task."
                     + (f" Answers are read with `{base['answer_extraction']}` (docs/eval_schema.md), the floor's too."
                        if base.get("answer_extraction", "answer_marker") != "answer_marker" else ""))
    for run in base.get("diverged") or []:
        notes.append(f"**Diverged**: {run['label']} was not measured: {run['message']}")
    duplicates = {k: v for k, v in (base.get("duplicate_prompts") or {}).items() if v}
    if duplicates:
        notes.append("**Warning**: " + ", ".join(f"{v} {k}" for k, v in duplicates.items()) +
                     " prompts appear verbatim in the training data; their scores overstate what a model learned.")
    return " ".join(notes)


def _markdown_table(table: list[list[str]]) -> str:
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _sections(rows: list[Row], budget: float, resamples: int = 1000,
              axis: str = "loss") -> list[tuple[str, str, str | None]]:
    """(title, markdown body, image file name or None) for each report section; ``axis`` is the frontier's
    general axis (``loss`` or an lm-eval task)."""
    sections: list[tuple[str, str, str | None]] = []
    sections.append(("Recommendation", recommendation(rows, budget, resamples), None))
    sections.append(("Trade-off table", _markdown_table(headline_table(rows)) +
                     "\n\nChosen: the learning rate picked for each method on validation exact match. Gain: test "
                     "exact match minus the base's. Forgetting: held-out general loss minus the base's (nats/token; "
                     "positive means worse). Intervals: paired bootstrap over test examples and general documents.",
                     None))
    search = search_body(rows)
    if search:
        sections.append(("Search (tuned methods)", search, None))
    curves = [g for g in groups(rows, RowKind.TRAINED) if len(g.get("curve") or []) > 1]
    if curves:
        sections.append(("Learning curves", "Validation exact match (on a small slice) and held-out general loss "
                         "while training; a score still rising at the last step says the budget, not the method, "
                         "was the limit.\n\n" + "\n".join(f"- `{g.label}`{curve_note(g)}".replace("`; its", "`: its")
                                                            for g in curves), "learning_curves.png"))
    sections.append(("Seed claims", _markdown_table(claims_table(rows, resamples)) +
                     "\n\nReproduced / not reproduced: the interval lies on the claim's side of 0 / the other side. "
                     "Inconclusive: an interval includes 0, or the models trade gain for retention (not at matched "
                     "gain). Matched gain: the comparator's point (trained or WiSE-FT) closest in validation exact "
                     "match.", None))
    methods = methods_table(rows, resamples) if _has_items(rows) else None
    if methods:
        sections.append(("Methods against plain SFT", _markdown_table(methods) +
                         "\n\nA difference is better or worse only when its 95% paired interval excludes 0; "
                         "otherwise the two are indistinguishable on this many examples.", None))
    benchmarks = benchmark_table(rows, resamples)
    if benchmarks:
        sections.append(("Forgetting on benchmarks (lm-eval)", _markdown_table(benchmarks) +
                         "\n\nEach task's score, and in brackets its forgetting: the base's score minus the model's "
                         "(positive means worse), with its 95% paired bootstrap interval over the task's documents. "
                         "Mean forgetting: the average over tasks, its interval resampling each task's documents "
                         "on their own.", None))
    front = pareto_front(on_axis(rows, axis))
    measure = "held-out general loss" if axis == "loss" else f"lm-eval task `{axis}`"
    sections.append(("Frontier", f"Each point is a model: up is more domain gain, right is more forgetting on the "
                     f"{measure}. The dashed line is the Pareto front (" + ", ".join(f"`{r['label']}`" for r in front)
                     + "); faint curves are WiSE-FT sweeps from the base (alpha 0) to each fine-tuned model "
                     "(alpha 1).", "frontier.png"))
    lines = overadaptation_lines(rows, resamples) if _has_items(rows) else []
    if lines:
        sections.append(("Interpolation (WiSE-FT) and output ensembles",
                         "Does an alpha strictly between 0 and 1 beat the fine-tuned model on its own domain (the "
                         "over-adaptation of arXiv 2506.01901)? Alpha is chosen on validation, for the weights curve "
                         "and the output-ensemble curve each; the difference is on the test set.\n\n"
                         + "\n".join(lines), "alpha_curves.png"))
    sections += cocktail_sections(rows)  # LM-Cocktail's weights and alpha curve beside WiSE-FT's
    kl = [r for r in rows if r.get("kl_estimate") is not None]
    if kl:
        body = "\n".join(f"- `{r['label']}`: {_ci(r['kl_estimate'], r['kl_ci'], '.3f')} nats/sequence" for r in kl)
        sections.append(("Context-free KL estimate", "KL(p_base || p_model) estimated on held-out samples drawn "
                         "from the base with no context (arXiv 2505.13811):\n\n" + body, None))
    every = [["model", "kind", "alpha", "validation EM", "test EM", "general nats/tok", "gain", "forgetting"]]
    for r in rows:
        every.append([r["label"], r["kind"], f"{r['alpha']:g}" if r.get("alpha") is not None else "-",
                      f"{r['validation_accuracy']:.1%}" if r.get("validation_accuracy") is not None else "-",
                      f"{r['domain_accuracy']:.1%}", f"{r['general_nats_per_token']:.3f}", f"{r['gain']:+.1%}",
                      f"{r['forgetting']:+.3f}"])
    sections.append(("Every evaluated model", _markdown_table(every), None))
    return sections


def _inline_md(text: str) -> str:
    """The little markdown the report uses (bold, code) as HTML."""
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _html_body(body: str) -> str:
    parts, table, items = [], [], []
    for line in body.split("\n"):
        if line.startswith("|"):
            if line.startswith("|---"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            tag = "th" if not table else "td"
            table.append("<tr>" + "".join(f"<{tag}>{_inline_md(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            parts.append("<table>" + "".join(table) + "</table>")
            table = []
        if line.startswith("- "):
            items.append(f"<li>{_inline_md(line[2:])}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.strip():
            parts.append(f"<p>{_inline_md(line)}</p>")
    if table:
        parts.append("<table>" + "".join(table) + "</table>")
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 3px}"""


def write_report(root: Path, cfg: Any) -> Path:
    """Write ``frontier.png``, ``alpha_curves.png``, ``report.md`` and ``report.html`` from ``results.jsonl``.

    Returns:
        The path of ``report.html``.
    """
    rows = read_rows(root)
    axis = cfg.frontier.general if getattr(cfg, "frontier", None) is not None else "loss"
    images = {"frontier.png": plot_frontier(on_axis(rows, axis), root / "frontier.png", axis),
              "alpha_curves.png": plot_alpha_curves(rows, root / "alpha_curves.png"),
              "learning_curves.png": plot_learning_curves(rows, root / "learning_curves.png")}
    title = f"forgetless study: {cfg.name}"
    intro = (f"Base model `{cfg.base_model}`; domain data `{cfg.data.train}`; general text `{cfg.data.general}`; "
             f"forgetting budget {cfg.budget:g} nats/token; {sum(r['kind'] == RowKind.TRAINED for r in rows)} trained "
             f"models, {len(rows)} evaluated in all. Measured on {machines_sentence(rows)}. "
             + data_note(rows)).strip()
    resamples = cfg.eval.bootstrap if getattr(cfg, "eval", None) is not None else 1000
    md = [f"# {title}", "", intro, ""]
    body_html = [f"<h1>{html.escape(title)}</h1>", f"<p>{_inline_md(intro)}</p>"]
    for heading, body, image in _sections(rows, cfg.budget, resamples, axis):
        md += [f"## {heading}", "", body, ""]
        body_html += [f"<h2>{html.escape(heading)}</h2>", _html_body(body)]
        if image and images.get(image):
            md += [f"![{heading}]({image})", ""]
            data = base64.b64encode((root / image).read_bytes()).decode("ascii")
            body_html.append(f'<img id="{image.split(".")[0]}" alt="{html.escape(heading)}" '
                             f'src="data:image/png;base64,{data}">')
    write_text(root / "report.md", "\n".join(md))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body_html)}</body></html>")
    write_text(root / "report.html", page)
    summary: dict[str, Any] = {"recommended": None, "frontier_axis": axis,
                               "pareto_front": [r["id"] for r in pareto_front(on_axis(rows, axis))],
                               "machines": machines(rows), "report_written_on": machine_stamp()}
    if _has_items(rows):
        decision = decide(rows, cfg.budget, resamples)
        summary.update({
            "recommended": [r["id"] for r in decision.ship.rows] if decision.ship else None,
            "validation_choice": [r["id"] for r in decision.choice.group.rows] if decision.choice.group else None,
            "reason": " ".join(r for r in decision.reasons if r) or decision.choice.reason,
            "claims": [vars(c) for c in seed_claims(rows, resamples)],
        })
    write_json(root / "summary.json", summary)
    return root / "report.html"


def machines(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows' measurements (and trainings) each machine made: ``{stamp summary: count}``."""
    seen: dict[str, int] = {}
    for row in rows:
        for stamp in {row.get("measured_on"), row.get("trained_on")} - {None}:
            seen[stamp] = seen.get(stamp, 0) + 1
    return seen


def machines_sentence(rows: list[dict[str, Any]]) -> str:
    """Where the rows were measured, for the report's first paragraph."""
    seen = machines(rows)
    if not seen:
        return "an unrecorded machine (cells from before forgetless recorded machines)"
    if len(seen) == 1:
        return next(iter(seen))
    return "several machines: " + "; ".join(f"{stamp} ({count} rows)" for stamp, count in seen.items())
