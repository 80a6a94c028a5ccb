"""General-ability probes a real model has, built offline from data PyPI packages ship (``docs/probes.md``).

Each probe is a list of natural-language continuations with a short gold answer
(``"The capital of Germany is"`` -> ``"Berlin"``), the form in which a small
instruct model states what it knows (SmolLM2-135M-Instruct continues that prompt
with ``" Berlin."``), and the answer extractor that reads such a continuation
(``forgetless.evaluation.answer_extraction``):

==================  ================================  ===========  ==========================
probe               data                              extractor    licence of the data
==================  ================================  ===========  ==========================
country_capitals    ``countryinfo`` (1.0.1)           gold_prefix  MIT
us_state_capitals   ``us`` (4.0.0)                    gold_prefix  BSD-3-Clause (Sunlight Labs)
element_symbols     ``periodictable`` (2.1.0)         gold_prefix  public domain
arithmetic          generated here (seeded)           first_number (ours)
==================  ================================  ===========  ==========================

``write_probes`` writes one JSONL file per probe (``prompt``, ``answer``,
``answer_extraction``: ``forgetless eval --domain`` reads the extractor from it) and
the lm-eval task YAMLs ``forgetless_probe_<name>`` plus the group ``forgetless_probes``,
usable as the study's general axis (``lm_eval: {tasks: [forgetless_probes],
include_path: probes}``) and by ``lm_eval --include_path DIR`` itself. The files depend
only on the packages' data and the seed, so they are the same on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from forgetless.atomic import write_jsonl
from forgetless.evaluation.lmeval_yaml import write_group_yaml, write_task_yamls
from forgetless.extras import MissingExtra

# Generation budget of the lm-eval tasks: a capital, symbol or number and the word after it.
# `forgetless eval --max-new-tokens 16` on a probe file scores exactly as lm-eval does.
MAX_NEW_TOKENS = 16
GROUP = "forgetless_probes"
# Words that take "the" in running text: "the United Kingdom", "the Czech Republic", "the Bahamas".
_THE_WORDS = {"United", "Republic", "Islands", "Kingdom", "States", "Netherlands", "Philippines", "Maldives",
              "Bahamas", "Gambia", "Emirates", "Union"}


def _missing(package: str) -> ImportError:
    return MissingExtra(package)


def _with_article(name: str) -> str:
    """A country's name as it reads after "The capital of"."""
    if name.startswith("The "):
        return "the " + name[4:]
    return "the " + name if _THE_WORDS & set(name.split()) else name


def country_capitals() -> list[dict[str, str]]:
    """"The capital of France is" -> "Paris": the ISO 3166 countries and territories of ``countryinfo`` with one
    capital, sorted by name. Left out: entries with no ISO numeric code (Scotland, Wales), no capital, several
    capitals ("A / B"), or a name that reads badly in a sentence (with a comma or parentheses)."""
    try:
        import countryinfo  # imported here: an optional extra, read only when probes are written
    except ImportError:
        raise _missing("countryinfo") from None
    rows = {}
    for country in countryinfo.all_countries():
        name, capital = country.name(), country.capital()
        if isinstance(capital, list):  # one entry (Vatican City State) lists its capital
            capital = capital[0] if len(capital) == 1 else None
        iso = (country.info().get("ISO") or {}).get("numeric")
        if not iso or not capital or "/" in capital or any(c in name for c in ",()"):
            continue
        rows[name] = {"prompt": f"The capital of {_with_article(name)} is", "answer": capital}
    return [rows[name] for name in sorted(rows)]


def us_state_capitals() -> list[dict[str, str]]:
    """"The capital of the state of Texas is" -> "Austin": the 50 states of ``us``, in its order (alphabetical);
    "the state of" keeps Washington's (Olympia) apart from Washington, D.C."""
    try:
        import us  # imported here: an optional extra, read only when probes are written
    except ImportError:
        raise _missing("us") from None
    return [{"prompt": f"The capital of the state of {state.name} is", "answer": state.capital}
            for state in us.states.STATES]


def element_symbols() -> list[dict[str, str]]:
    """"The chemical symbol of gold is" -> "Au": the 118 elements of ``periodictable`` by atomic number."""
    try:
        import periodictable  # imported here: an optional extra, read only when probes are written
    except ImportError:
        raise _missing("periodictable") from None
    return [{"prompt": f"The chemical symbol of {element.name} is", "answer": element.symbol}
            for element in periodictable.elements if element.number > 0]  # number 0 is the neutron


def arithmetic(n: int = 100, seed: int = 0) -> list[dict[str, str]]:
    """"7 + 5 =" -> "12": ``n`` distinct sums, differences (never negative) and products of small numbers,
    drawn with ``random.Random(seed)``: operands 1-20 for + and -, 2-12 for x (the times table)."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    while len(seen) < n:
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            prompt, answer = f"{a} * {b} =", a * b
        else:
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            a, b = (a, b) if op == "+" or a >= b else (b, a)
            prompt, answer = f"{a} {op} {b} =", a + b if op == "+" else a - b
        seen.setdefault(prompt, str(answer))
    return [{"prompt": p, "answer": a} for p, a in seen.items()]


# name -> (builder, extractor)
PROBES: dict[str, tuple[Callable[[], list[dict[str, str]]], str]] = {
    "country_capitals": (country_capitals, "gold_prefix"),
    "us_state_capitals": (us_state_capitals, "gold_prefix"),
    "element_symbols": (element_symbols, "gold_prefix"),
    "arithmetic": (arithmetic, "first_number"),
}


def write_probes(out_dir: str | Path, names: list[str] | None = None) -> Path:
    """Write the probes' JSONL files and lm-eval task YAMLs into ``out_dir`` (pass it as ``include_path``).

    Args:
        out_dir: created if missing; files already there are replaced only in a directory the probes were
            written to before.
        names: which probes (default: all of ``PROBES``).

    Returns:
        ``out_dir``, holding ``<name>.jsonl`` and ``forgetless_probe_<name>.yaml`` per probe, the group
        ``forgetless_probes.yaml`` and ``forgetless_answers.py`` (gold_prefix's scorer for lm-eval).

    Raises:
        ValueError: an unknown probe name, or ``out_dir`` is a file or holds a file of the user's that a probe
            file would replace.
    """
    chosen = list(PROBES) if names is None else names
    unknown = [n for n in chosen if n not in PROBES]
    if unknown:
        raise ValueError(f"probes: unknown {unknown}; expected some of {list(PROBES)}")
    # Every probe's items first: a missing package fails before anything is written.
    rows = {name: [{**row, "answer_extraction": PROBES[name][1]} for row in PROBES[name][0]()] for name in chosen}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: is a file; expected a directory for the probes")
    # A directory the probes were written to before (it holds the group YAML) is refreshed; in any other, a file of
    # the same name is the user's and is not replaced.
    if not (out / f"{GROUP}.yaml").is_file():
        targets = [f"{n}.jsonl" for n in chosen] + [f"forgetless_probe_{n}.yaml" for n in chosen]
        clash = [name for name in [*targets, f"{GROUP}.yaml", "forgetless_answers.py"] if (out / name).exists()]
        if clash:
            raise ValueError(f"--output {out}: already holds {clash[0]}, not written by `forgetless probes` (no "
                             f"{GROUP}.yaml beside it); choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in chosen:
        files[f"probe_{name}"] = out / f"{name}.jsonl"
        write_jsonl(files[f"probe_{name}"], rows[name])
    write_task_yamls(out, None, files, max_gen_toks=MAX_NEW_TOKENS)
    write_group_yaml(out, GROUP, [f"forgetless_probe_{name}" for name in chosen])
    return out
