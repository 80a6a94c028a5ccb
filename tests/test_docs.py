"""The method notes are in the repository, and every citation of them points at a section that exists.

Code, configs, benchmarks, tests and docs cite ``docs/methods.md#<anchor>``; an anchor is
a heading's GitHub slug or an explicit ``<a id="...">``. A renamed heading would leave
those citations dangling, so this test fails on any anchor the file does not define. It
also fails on a citation of the team's internal notes file, which users do not have.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS_DOC = ROOT / "docs" / "methods.md"
# Where citations live; build outputs, virtualenvs and runs are not scanned.
SCANNED = ("src", "configs", "bench", "tests", "docs", "scripts", "README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt", ".json", ".cfg"}
# ``docs/methods.md#x`` from anywhere, ``methods.md#x`` from docs/ itself (a relative link).
CITATION = re.compile(r"(?:docs/)?methods\.md#([A-Za-z0-9_-]+)")
# The internal notes' file name, split so this file does not cite it itself.
INTERNAL_NOTES = "METHODS" + ".md"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and underscores (Unicode too)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor of a Markdown document: heading slugs (with GitHub's -1, -2 for repeats) and ``<a id>``s."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return found


def scanned_files() -> list[Path]:
    """The repository's text files that may cite the notes (this test excluded)."""
    files = []
    for name in SCANNED:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in candidates:
            if (file.is_file() and file.suffix in SUFFIXES and file.resolve() != Path(__file__).resolve()
                    and not any(part.startswith(".") or part == "__pycache__" for part in file.relative_to(ROOT).parts)):
                files.append(file)
    return files


def test_slug_matches_github() -> None:
    # Hand-checked against GitHub's rendering of the same headings.
    assert github_slug("L2-SP") == "l2-sp"
    assert github_slug("WiSE-FT") == "wise-ft"
    assert github_slug("Model soups (uniform, greedy)") == "model-soups-uniform-greedy"
    assert github_slug("`talr`") == "talr"
    assert anchors("## KL\n\n### KL\n\n```\n## not a heading\n```\n<a id=\"objectives\"></a>") == {
        "kl", "kl-1", "objectives"}


def test_methods_doc_exists_with_the_sections_the_code_relies_on() -> None:
    assert METHODS_DOC.is_file(), "docs/methods.md is missing"
    defined = anchors(METHODS_DOC.read_text(encoding="utf-8"))
    for name in ("nll", "dft", "talr", "flow", "l2-sp", "kl", "lora", "context-free-replay", "kl-estimate",
                 "wise-ft", "output-ensemble", "model-soups", "task-arithmetic", "lm-cocktail", "forgetting-budget",
                 "statistics", "selection-on-validation", "constant-answer-floor", "verdicts", "overadaptation",
                 "exponential-tilting"):
        assert name in defined, f"docs/methods.md has no section #{name}"


def test_every_cited_anchor_exists() -> None:
    defined = anchors(METHODS_DOC.read_text(encoding="utf-8"))
    cited: dict[str, list[str]] = {}
    for file in scanned_files():
        text = file.read_text(encoding="utf-8", errors="replace")
        if file == METHODS_DOC:  # links inside the file itself: (#anchor)
            for anchor in re.findall(r"\]\(#([A-Za-z0-9_-]+)\)", text):
                cited.setdefault(anchor, []).append(str(file.relative_to(ROOT)))
        for anchor in CITATION.findall(text):
            cited.setdefault(anchor, []).append(str(file.relative_to(ROOT)))
    assert cited, "nothing cites docs/methods.md#<anchor>; the scan is broken"
    missing = {anchor: sorted(set(where)) for anchor, where in cited.items() if anchor not in defined}
    assert not missing, f"cited anchors that docs/methods.md does not define: {missing}"


def test_nothing_cites_the_internal_notes() -> None:
    citing = [str(f.relative_to(ROOT)) for f in scanned_files()
              if INTERNAL_NOTES in f.read_text(encoding="utf-8", errors="replace")]
    assert not citing, f"{citing} cite {INTERNAL_NOTES}, which is not in the repository; cite docs/methods.md"
