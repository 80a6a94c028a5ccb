"""Named answer extractors: how a free-form generation is reduced to an answer and compared with the gold.

Exact match needs an answer out of a generation; which rule fits depends on the data
set, so it is chosen per data set (``forgetless eval --answer-extraction``, the study's
``eval.answer_extraction``, or an ``answer_extraction`` field on the file's records)
and recorded in every result that reports exact match. The same rule scores the
constant-answer floor (``constant_floor``) and the lm-eval tasks forgetless writes
(``forgetless.evaluation.lmeval_yaml.write_task_yamls``).

``first_line``, ``first_number`` and ``regex:`` are lm-eval's own rules: its ``regex`` filter
(``lm_eval/filters/extraction.py``, ``RegexFilter``: ``re.findall``, the first match,
the first non-empty group of a match with several, stripped) followed by its
``exact_match`` metric's options (``lm_eval/api/metrics.py``,
``exact_match_hf_evaluate``: ``regexes_to_ignore`` deleted from prediction *and*
reference, then ``ignore_case`` lower-cases both), so ``lm_eval`` scores a written
task item for item as forgetless does. Punctuation below is ASCII
(``string.punctuation``); lower-casing is ``str.lower`` (what lm-eval's
``ignore_case`` does).

``answer_marker`` (the default; ``forgetless.evaluation.exact_match``)
    The text after the last ``Answer:``, to the end of that line; surrounding
    whitespace and one trailing period removed, inner whitespace collapsed; case kept.
    ``" E = 5.\\nAnswer: 12."`` -> ``"12"``; ``" Paris."`` -> no answer.
``first_line``
    The first line with a non-space character, with surrounding whitespace and
    punctuation removed (from the gold too), lower-cased.
    ``" Paris.\\n\\nThe capital"`` -> ``"paris"``; gold ``"Paris"`` -> ``"paris"``: correct.
    ``" Paris, the largest city"`` -> ``"paris, the largest city"``: wrong.
``gold_prefix``
    Correct when the generation starts with the gold, both normalized: lower-cased,
    punctuation deleted (except ``.``/``,`` between digits and ``-`` before one, which
    belong to numbers), whitespace runs collapsed to one space, surrounding whitespace
    removed; the gold must be followed by the end or a character that does not continue
    a word or number (not a letter, digit or ``_``, nor ``.``/``,`` before a digit).
    ``" Paris.\\n\\nThe capital"`` for ``"Paris"``: correct (``"paris the capital"``);
    ``" Washington, D.C. is"`` for ``"Washington D.C."``: correct (``"washington dc"``);
    ``" Parisian"``, ``" 120"``, ``" 12.5"`` or ``" -12"`` for ``"Paris"``/``"12"``: wrong.
    The answer recorded is the whole normalized generation. lm-eval has no filter for
    it (a filter never sees the gold), so its task YAML scores it with a
    ``process_results`` function that calls this module.
``first_number``
    The first number (``-?[0-9][0-9,]*(\\.[0-9]+)?``) with commas removed (from the gold
    too). ``" It is 1,024 bytes"`` -> ``"1024"``; ``"12.0"`` is not ``"12"``.
``regex:<pattern>``
    The first match of ``pattern`` (Python ``re``): its first non-empty group, or the
    whole match when it has none, stripped; case kept. ``regex:capital is (\\w+)`` on
    ``" The capital is Berlin."`` -> ``"Berlin"``.

A rule that finds nothing (or only an empty string) gives no answer, which never
matches (lm-eval compares its fallback ``[invalid]`` instead: the same 0 unless a
gold answer is that string).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from forgetless.evaluation.exact_match import exact_match, extract_answer

DEFAULT = "answer_marker"
NAMES = ("answer_marker", "first_line", "gold_prefix", "first_number")
EXPECTED = f"expected one of {', '.join(NAMES)} or regex:<pattern>"
# The record field that declares a file's extractor (every record of the file must agree).
FIELD = "answer_extraction"

# The answer line of answer_marker as lm-eval's regex filter (with group_select -1: the last
# "Answer:"): the rest of its line, minus one trailing period. lm-eval does not collapse inner
# whitespace runs; gold answers have none.
ANSWER_REGEX = r"Answer:[ \t]*([^\n]*?)\.?[ \t]*(?:\n|$)"
_PUNCT = r"!-/:-@\[-`{-~"  # string.punctuation as character-class ranges
_STRIP = (rf"^[\s{_PUNCT}]+", rf"[\s{_PUNCT}]+$")  # surrounding whitespace and punctuation
_FIRST_LINE = r"\A\s*([^\n]*)"  # \s* skips blank lines, so the group is the first non-empty line
_FIRST_NUMBER = r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)"
# gold_prefix deletes punctuation, but not the parts of a number ("12.5", "1,024", "-3"): deleting
# those would make " 12.5" start with "12" and " -3" with "3".
_PREFIX_PUNCT = re.compile(rf"(?!(?<=\d)[.,](?=\d))(?!-(?=\d))[{_PUNCT}]")
# After the gold, a gold_prefix match must not continue a word or a number.
_BOUNDARY = re.compile(r"(?!\w|[.,]\d)")


@dataclass(frozen=True)
class AnswerExtraction:
    """One extractor: an lm-eval regex filter plus exact-match options, or the prefix rule.

    Attributes:
        spec: the name as given (``first_line``, ``regex:...``); results record it.
        kind: ``marker`` (answer_marker), ``regex`` (lm-eval's regex filter) or ``prefix`` (gold_prefix).
        pattern: the regex filter's pattern (``kind == "regex"``).
        group_select: which match lm-eval's filter takes (0: the first; answer_marker's is -1, the last).
        ignore: patterns deleted from answer and gold before comparing (lm-eval's ``regexes_to_ignore``).
        ignore_case: lower-case answer and gold (lm-eval's ``ignore_case``).
    """

    spec: str
    kind: Literal["marker", "regex", "prefix"]
    pattern: str | None = None
    group_select: int = 0
    ignore: tuple[str, ...] = ()
    ignore_case: bool = False

    def normalize(self, text: str) -> str:
        """The comparison form of an answer or gold string (lm-eval's metric options, in its order)."""
        if self.kind == "marker":
            return re.sub(r"\s+", " ", text.strip())
        if self.kind == "prefix":
            return re.sub(r"\s+", " ", _PREFIX_PUNCT.sub("", text)).strip().lower()
        for pattern in self.ignore:
            text = re.sub(pattern, "", text)
        return text.lower() if self.ignore_case else text

    def gold(self, gold: str) -> str:
        """The normalized gold answer."""
        return self.normalize(gold)

    def answer(self, generation: str) -> str | None:
        """The normalized answer a generation states, or None when it states none."""
        if self.kind == "marker":
            return extract_answer(generation)
        if self.kind == "prefix":
            return self.normalize(generation) or None
        found = re.findall(self.pattern or "", generation)
        if not found:
            return None
        match = found[self.group_select]
        if isinstance(match, tuple):  # several groups: lm-eval takes the first non-empty one
            match = next((g for g in match if g), "")
        return self.normalize(match.strip()) or None

    def agrees(self, answer: str, gold: str) -> bool:
        """Whether a normalized ``answer`` (what ``answer`` returns) scores as ``gold``."""
        target = self.gold(gold)
        if self.kind == "prefix":
            return bool(target) and answer.startswith(target) and bool(_BOUNDARY.match(answer, len(target)))
        return answer == target

    def matches(self, generation: str, gold: str) -> bool:
        """Exact match of a generation against the gold answer under this extractor."""
        if self.kind == "marker":
            return exact_match(generation, gold)
        answer = self.answer(generation)
        return answer is not None and self.agrees(answer, gold)


def parse_extraction(spec: str, where: str = "") -> AnswerExtraction:
    """The extractor named ``spec``.

    Args:
        spec: ``answer_marker``, ``first_line``, ``gold_prefix``, ``first_number`` or ``regex:<pattern>``.
        where: what to name in an error (the flag, config key or file); pydantic validators leave it
            empty, since pydantic's message names the flag or key already.

    Raises:
        ValueError: one line naming ``where``, the value and what was expected.
    """
    at = f"{where}: " if where else ""
    if spec == "answer_marker":
        return AnswerExtraction(spec, "marker", ANSWER_REGEX, group_select=-1)
    if spec == "first_line":
        return AnswerExtraction(spec, "regex", _FIRST_LINE, ignore=_STRIP, ignore_case=True)
    if spec == "gold_prefix":
        return AnswerExtraction(spec, "prefix")
    if spec == "first_number":
        return AnswerExtraction(spec, "regex", _FIRST_NUMBER, ignore=(",",))
    if isinstance(spec, str) and spec.startswith("regex:"):
        pattern = spec.removeprefix("regex:")
        if not pattern:
            raise ValueError(f"{at}'regex:' has no pattern; expected regex:<pattern>, e.g. 'regex:capital is (\\w+)'")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{at}{spec!r} is not a valid regular expression ({err}); expected "
                             "regex:<pattern> in Python re syntax") from None
        return AnswerExtraction(spec, "regex", pattern)
    raise ValueError(f"{at}{spec!r} is not an answer extraction; {EXPECTED}")


def check_spec(spec: str | None) -> str | None:
    """``spec`` unchanged when it names an extractor (None passes), for pydantic validators."""
    if spec is not None:
        parse_extraction(spec)
    return spec


def declared(fields: Iterable[dict[str, object]], path: str) -> str | None:
    """The extractor a file's records declare in their ``answer_extraction`` field, or None.

    Raises:
        ValueError: records disagree, or a declared name is not an extractor.
    """
    seen = {f.get(FIELD) for f in fields} - {None}
    if len(seen) > 1:
        raise ValueError(f"{path}: records declare different {FIELD} values {sorted(map(str, seen))}; "
                         "expected one per file")
    if not seen:
        return None
    spec = seen.pop()
    if not isinstance(spec, str):
        raise ValueError(f"{path}: field {FIELD!r} is {spec!r}; {EXPECTED}")
    parse_extraction(spec, f"{path}, field {FIELD!r}")
    return spec


def resolve(explicit: str | None, fields: Iterable[dict[str, object]], path: str) -> AnswerExtraction:
    """The extractor of a data set: ``explicit`` (a flag or config key), else the file's, else answer_marker."""
    return parse_extraction(explicit or declared(fields, path) or DEFAULT)


def constant_floor(golds: list[str], extraction: AnswerExtraction) -> dict[str, object]:
    """The best constant answer under ``extraction``: always stating one (normalized) gold answer.

    Candidates are the normalized gold answers; the one scoring most wins (the first seen
    on ties), so under a case-folding rule ``Paris`` and ``paris`` count together, and under
    gold_prefix ``new york`` also scores the gold ``New``.

    Returns:
        ``{"majority_answer": the first gold with the winning form, "majority_accuracy": float,
        "floor_correct": [0/1 per gold]}``.
    """
    keys = [extraction.gold(g) for g in golds]
    counts = Counter(keys)
    if extraction.kind == "prefix":
        # A candidate answer c scores every gold that is a word-bounded prefix of it.
        scores = {c: sum(n for g, n in counts.items() if extraction.agrees(c, g)) for c in counts}
    else:
        scores = dict(counts)
    best = max(counts, key=lambda c: scores[c])  # max keeps the first of equals: first-seen order
    correct = [int(extraction.agrees(best, g)) for g in golds]
    return {"majority_answer": golds[keys.index(best)], "majority_accuracy": sum(correct) / len(golds),
            "floor_correct": correct}


def lmeval_results(spec: str, doc: dict[str, object], results: list[str]) -> dict[str, float]:
    """lm-eval's ``process_results`` for an extractor no built-in filter expresses (gold_prefix).

    Args:
        spec: the extractor.
        doc: the task's document (its ``answer`` is the gold).
        results: the task's filtered responses for ``doc`` (one greedy generation).
    """
    return {"exact_match": float(parse_extraction(spec).matches(results[0], str(doc["answer"])))}
