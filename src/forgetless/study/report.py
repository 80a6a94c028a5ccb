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

from forgetless.atomic import write_json
from forgetless.machine import machine_stamp
from forgetless.study.cocktail import cocktail_sections, headline_cocktails
from forgetless.study.frontier import overadaptation, pareto_front, recommend
from forgetless.study.plots import plot_alpha_curves, plot_frontier

Row = dict[str, Any]


def read_rows(root: Path) -> list[Row]:
    """The rows of ``root/results.jsonl``."""
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines() if line.strip()]


def _ci(value: float, ci: list[float], fmt: str) -> str:
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def _is_plain_sft(row: Row) -> bool:
    return row["kind"] == "trained" and bool(row.get("plain_sft"))


def headline_table(rows: list[Row]) -> list[list[str]]:
    """The trade-off table of the papers: one row per trained model, best domain and general score in bold."""
    trained = [r for r in rows if r["kind"] in ("base", "trained")] + headline_cocktails(rows)
    best_domain = max(r["domain_accuracy"] for r in trained)
    best_general = min(r["general_nats_per_token"] for r in trained if r["kind"] != "base")
    table = [["model", "lr", "domain EM", "general nats/tok", "gain [95% CI]", "forgetting [95% CI]"]]
    for r in trained:
        domain = f"{r['domain_accuracy']:.1%}"
        general = f"{r['general_nats_per_token']:.3f}"
        if r["domain_accuracy"] == best_domain:
            domain = f"**{domain}**"
        if r["kind"] != "base" and r["general_nats_per_token"] == best_general:
            general = f"**{general}**"
        lr = f"{r['learning_rate']:g}" if r.get("learning_rate") else "-"
        table.append([r["label"], lr, domain, general, _ci(r["gain"], r["gain_ci"], "+.1%"),
                      _ci(r["forgetting"], r["forgetting_ci"], "+.3f")])
    return table


def recommendation(rows: list[Row], budget: float) -> str:
    """A plain-language answer: what to ship under the budget, and how it compares with plain SFT."""
    pick, reason = recommend(rows, budget)
    sft = [r for r in rows if _is_plain_sft(r)]
    lines = []
    if pick is None:
        lines.append(f"**No model meets the budget.** {reason}. Loosen the budget, lower the learning rate, "
                     "or interpolate more strongly towards the base.")
    elif pick["kind"] == "base":
        lines.append(f"**Ship the base model.** No fine-tuned model gains on the domain within the forgetting "
                     f"budget of {budget:g} nats/token.")
    else:
        lines.append(
            f"**Ship `{pick['label']}`** ({pick['kind']}): domain exact match {pick['domain_accuracy']:.1%} "
            f"(gain {_ci(pick['gain'], pick['gain_ci'], '+.1%')}), general loss "
            f"{_ci(pick['forgetting'], pick['forgetting_ci'], '+.3f')} nats/token against the base; {reason}."
        )
    if sft:
        best_sft = max(sft, key=lambda r: r["domain_accuracy"])
        lines.append(
            f"Plain SFT at its best domain score (`{best_sft['label']}`) reaches {best_sft['domain_accuracy']:.1%} "
            f"and forgets {best_sft['forgetting']:+.3f} nats/token"
            + (" (over budget)." if best_sft["forgetting"] > budget else " (within budget).")
        )
        if pick is not None and pick["kind"] != "base":
            d_acc = pick["domain_accuracy"] - best_sft["domain_accuracy"]
            d_forget = pick["forgetting"] - best_sft["forgetting"]
            lines.append(f"Against that SFT model, the recommended one is {d_acc * 100:+.1f} points on the domain "
                         f"and {d_forget:+.3f} nats/token on general text.")
    return " ".join(lines)


def _majority_note(rows: list[Row]) -> str:
    """What always answering the most frequent test answer scores: a gain below it computes nothing."""
    base = next((r for r in rows if r["kind"] == "base" and "majority_accuracy" in r), None)
    if base is None:
        return ""
    at_floor = [r["label"] for r in [*(r for r in rows if r["kind"] == "trained"), *headline_cocktails(rows)]
                if r["domain_accuracy"] <= base["majority_accuracy"]]
    note = (f" Always answering the most frequent test answer (`{base['majority_answer']}`) scores "
            f"{base['majority_accuracy']:.1%}")
    if at_floor:
        note += (f"; {len(at_floor)} of the trained models do not beat it, so their domain score reflects the "
                 "answer format and prior rather than the calculation")
    return note + "."


def _markdown_table(table: list[list[str]]) -> str:
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _sections(rows: list[Row], budget: float) -> list[tuple[str, str, str | None]]:
    """(title, markdown body, image file name or None) for each report section."""
    sections: list[tuple[str, str, str | None]] = []
    sections.append(("Recommendation", recommendation(rows, budget), None))
    sections.append(("Trade-off table", _markdown_table(headline_table(rows)) +
                     "\n\nGain: domain exact match minus the base's. Forgetting: held-out general loss minus the "
                     "base's (nats/token; positive means worse). Intervals: paired bootstrap over test examples "
                     "and general documents." + _majority_note(rows), None))
    front = pareto_front(rows)
    sections.append(("Frontier", "Each point is a model: up is more domain gain, right is more forgetting. The "
                     "dashed line is the Pareto front (" + ", ".join(f"`{r['label']}`" for r in front) + "); faint "
                     "curves are WiSE-FT sweeps from the base (alpha 0) to each fine-tuned model (alpha 1).",
                     "frontier.png"))
    checks = [c for r in rows if r["kind"] == "trained" and (c := overadaptation(rows, r["id"]))]
    if checks:
        lines = []
        for c in checks:
            verdict = ("**yes**: alpha {a:g} reaches {b:.1%} against {f:.1%} for the fine-tuned model"
                       if c["beats"] else "no: the best interior alpha ({a:g}) reaches {b:.1%}, the fine-tuned model "
                       "{f:.1%}")
            lines.append(f"- `{c['parent']}`: " + verdict.format(a=c["best_alpha"], b=c["best_accuracy"],
                                                                  f=c["finetuned_accuracy"]))
        sections.append(("Interpolation (WiSE-FT) and output ensembles",
                         "Does an alpha strictly between 0 and 1 beat the fine-tuned model on its own domain "
                         "(the over-adaptation of arXiv 2506.01901)?\n\n" + "\n".join(lines), "alpha_curves.png"))
    sections += cocktail_sections(rows)  # LM-Cocktail's weights and alpha curve beside WiSE-FT's
    kl = [r for r in rows if r.get("kl_estimate") is not None]
    if kl:
        body = "\n".join(f"- `{r['label']}`: {_ci(r['kl_estimate'], r['kl_ci'], '.3f')} nats/sequence" for r in kl)
        sections.append(("Context-free KL estimate", "KL(p_base || p_model) estimated on held-out samples drawn "
                         "from the base with no context (arXiv 2505.13811):\n\n" + body, None))
    every = [["model", "kind", "alpha", "domain EM", "general nats/tok", "gain", "forgetting"]]
    for r in rows:
        every.append([r["label"], r["kind"], f"{r['alpha']:g}" if r.get("alpha") is not None else "-",
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
    images = {"frontier.png": plot_frontier(rows, root / "frontier.png"),
              "alpha_curves.png": plot_alpha_curves(rows, root / "alpha_curves.png")}
    title = f"forgetless study: {cfg.name}"
    intro = (f"Base model `{cfg.base_model}`; domain data `{cfg.data.train}`; general text `{cfg.data.general}`; "
             f"forgetting budget {cfg.budget:g} nats/token; {sum(r['kind'] == 'trained' for r in rows)} trained "
             f"models, {len(rows)} evaluated in all. Measured on {machines_sentence(rows)}.")
    md = [f"# {title}", "", intro, ""]
    body_html = [f"<h1>{html.escape(title)}</h1>", f"<p>{_inline_md(intro)}</p>"]
    for heading, body, image in _sections(rows, cfg.budget):
        md += [f"## {heading}", "", body, ""]
        body_html += [f"<h2>{html.escape(heading)}</h2>", _html_body(body)]
        if image and images.get(image):
            md += [f"![{heading}]({image})", ""]
            data = base64.b64encode((root / image).read_bytes()).decode("ascii")
            body_html.append(f'<img id="{image.split(".")[0]}" alt="{html.escape(heading)}" '
                             f'src="data:image/png;base64,{data}">')
    _write_text(root / "report.md", "\n".join(md))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body_html)}</body></html>")
    _write_text(root / "report.html", page)
    pick, reason = recommend(rows, cfg.budget)
    write_json(root / "summary.json", {"recommended": pick["id"] if pick else None, "reason": reason,
                                       "pareto_front": [r["id"] for r in pareto_front(rows)],
                                       "machines": machines(rows), "report_written_on": machine_stamp()})
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


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
