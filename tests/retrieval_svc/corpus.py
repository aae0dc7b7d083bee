"""Small self-made corpora for tests (no external data)."""

from __future__ import annotations

import random

from retrieval_svc.domain import Document

TOPICS = {
    "astronomy": "The telescope observed distant galaxies, nebulae and the orbits of planets around stars.",
    "cooking": "Knead the dough, let it rise, then bake the bread in a hot oven until the crust is golden.",
    "finance": "The central bank raised interest rates to curb inflation and stabilise the currency markets.",
    "medicine": "The patient received antibiotics for the bacterial infection and recovered within a week.",
    "sailing": "The crew trimmed the sails, tacked against the wind and anchored in the sheltered harbour.",
    "music": "The orchestra tuned their violins before the symphony, and the conductor raised the baton.",
}

WORDS = ("river mountain signal garden copper window lantern harbor velvet engine pepper marble "
         "thunder ribbon castle meadow silver orbit canvas puzzle").split()


def topic_documents(namespace: str = "", per_topic: int = 2) -> list[Document]:
    docs = []
    for topic, sentence in TOPICS.items():
        for i in range(per_topic):
            text = f"{sentence} Note {i} about {topic}. " + " ".join(
                f"Sentence {j} of the {topic} record number {i} mentions {WORDS[(i + j) % len(WORDS)]}."
                for j in range(6)
            )
            docs.append(Document(namespace, f"{topic}-{i}", text, title=f"{topic} {i}",
                                 metadata={"topic": topic, "parity": str(i % 2)},
                                 source_updated_at=1_700_000_000.0 + i * 86400))
    return docs


def long_text(sentences: int, seed: int = 0, marker: str = "") -> str:
    rng = random.Random(seed)
    out = []
    for i in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        if marker:
            words.append(marker)
        out.append(" ".join(words).capitalize() + f" {i}.")
        if i % 7 == 6:
            out.append("\n\n")
    return " ".join(out)
