"""Recall quality of the default (offline, hashing) embedder on a labelled set.

The set (``project_o.bench.memory_corpus.LABELLED``) pairs 32 facts with
questions that paraphrase them. The thresholds are what the hashing
embedder reaches with some margin: it matches words, word pairs and
character trigrams, and knows no synonyms, so a question that shares no
word with its fact is beyond it by design. ``project-o bench memory``
reports the same measure at 10k and 100k memories.
"""

from __future__ import annotations

import pytest

from project_o.agent.semantic import SemanticMemory, SemanticStore
from project_o.bench.memory_corpus import LABELLED, distractors

#: stated thresholds (hit rates over the 32 questions)
TOP1_ALONE, TOP5_ALONE = 0.9, 1.0
TOP1_HIDDEN, TOP5_HIDDEN = 0.85, 0.9
#: distractors the labelled facts hide among in the harder case
HAYSTACK = 2000


def _store(haystack: int) -> tuple[SemanticMemory, dict[str, str]]:
    memory = SemanticMemory(SemanticStore(), lambda operation, data: None)
    for text in distractors(haystack, seed=7):
        memory.remember(text, kind="distractor")
    return memory, {question: memory.remember(fact, kind="fact") for fact, question in LABELLED}


def _hit_rates(memory: SemanticMemory, expected: dict[str, str]) -> tuple[float, float]:
    top1 = top5 = 0
    for question, memory_id in expected.items():
        found = [hit.id for hit in memory.recall(question, k=5)]
        top1 += found[0] == memory_id
        top5 += memory_id in found
    return top1 / len(expected), top5 / len(expected)


@pytest.fixture(scope="module")
def hidden() -> tuple[SemanticMemory, dict[str, str]]:
    return _store(HAYSTACK)


def test_each_question_finds_its_fact_among_the_labelled_facts() -> None:
    top1, top5 = _hit_rates(*_store(0))
    assert top1 >= TOP1_ALONE, top1
    assert top5 >= TOP5_ALONE, top5


def test_questions_find_their_facts_hidden_among_distractors(
    hidden: tuple[SemanticMemory, dict[str, str]],
) -> None:
    top1, top5 = _hit_rates(*hidden)
    assert top1 >= TOP1_HIDDEN, top1
    assert top5 >= TOP5_HIDDEN, top5


def test_a_filter_on_metadata_removes_the_distractors(
    hidden: tuple[SemanticMemory, dict[str, str]],
) -> None:
    memory, expected = hidden
    top5 = sum(memory_id in [h.id for h in memory.recall(q, k=5, where={"kind": "fact"})]
               for q, memory_id in expected.items())
    assert top5 / len(expected) >= TOP5_ALONE


@pytest.mark.parametrize(
    ("keywords", "fact"),
    [("peanuts", 2), ("Lisbon cats", 4), ("PostgreSQL", 5), ("Blue Heron codename", 17),
     ("INV-2291", 19), ("border collie", 20), ("GitLab repository", 29)],
)
def test_keyword_search_finds_facts_by_their_rare_words(
    hidden: tuple[SemanticMemory, dict[str, str]], keywords: str, fact: int
) -> None:
    memory, _ = hidden
    hits = memory.search(keywords, k=1)
    assert hits and hits[0].text == LABELLED[fact][0]
