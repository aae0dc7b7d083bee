"""What RetrievalStore's `index={"fields": [...]}` buys (docs/memory.md, "LangGraph store").

Sixteen memories `{"context": <filler sentences>, "text": <a fact>}` go into a LangGraph store
twice: once searched by the value's JSON alone, once with the "text" field also in the document's
title (which the service puts before every chunk). Each is then searched by a paraphrase of its
fact; the table gives how often it comes first and the MRR@10, by chunker window, filler length and
search mode. "context" sorts before "text" in the canonical JSON, so with a long filler the fact
sits in a later chunk than the first.

    .venv/bin/python bench/langgraph_index_fields.py [--fillers 0 3 12] [--windows 48 512]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_settings, command_line, machine_line, running_service, table, today  # noqa: E402

FACTS = [
    ("climbing", "Alice goes rock climbing in the mountains every summer", "who climbs rocks in the mountains?"),
    ("cello", "Bob plays the cello in a string quartet", "which person plays a string instrument in a quartet?"),
    ("vegan", "Carol follows a strict vegan diet", "who does not eat animal products?"),
    ("chess", "Dan competes in online chess tournaments", "who plays chess competitively?"),
    ("marathon", "Erin ran the Berlin marathon last year", "who runs long distance races?"),
    ("garden", "Frank grows tomatoes in his backyard garden", "who grows vegetables at home?"),
    ("pottery", "Grace makes ceramic bowls on a pottery wheel", "who makes ceramics?"),
    ("allergy", "Hank is allergic to peanuts", "who has a nut allergy?"),
    ("spanish", "Iris is learning Spanish before moving to Madrid", "who studies a foreign language?"),
    ("birds", "Jack photographs migrating birds at dawn", "who takes pictures of wildlife?"),
    ("baking", "Kim bakes sourdough bread every weekend", "who bakes bread?"),
    ("surf", "Leo surfs big waves in Portugal", "who rides ocean waves?"),
    ("astronomy", "Mia owns a telescope to watch the planets", "who observes the night sky?"),
    ("knitting", "Ned knits wool sweaters for his family", "who knits clothes?"),
    ("cycling", "Olga commutes to work by bicycle", "who rides a bike to the office?"),
    ("sailing", "Pete sails a small boat on the lake", "who goes sailing?"),
]
WORDS = ("river mountain signal garden copper window lantern harbor velvet engine pepper marble "
         "thunder ribbon castle meadow silver orbit canvas puzzle").split()


def filler(sentences: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
                    for _ in range(sentences))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fillers", type=int, nargs="+", default=[0, 3, 12])
    parser.add_argument("--windows", type=int, nargs="+", default=[48, 512])
    args = parser.parse_args()

    from retrieval_svc.integrations.langgraph import RetrievalStore

    rows = []
    for window in args.windows:
        settings = bench_settings(Path(tempfile.mkdtemp()),
                                  chunker={"window_tokens": window, "overlap_tokens": min(32, window // 6)})
        with running_service(settings) as (server, _):
            target = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
            for sentences in args.fillers:
                for fields in (None, ["text"]):
                    prefix = f"f{sentences}-{'fields' if fields else 'json'}"
                    for mode in ("dense", "hybrid"):
                        store = RetrievalStore(target, prefix=prefix, search_options={"mode": mode},
                                               index={"fields": fields} if fields else None)
                        if mode == "dense":
                            for i, (key, fact, _) in enumerate(FACTS):
                                store.put(("m",), key, {"context": filler(sentences, i), "text": fact})
                        first = reciprocal = 0.0
                        for key, _, query in FACTS:
                            keys = [item.key for item in store.search(("m",), query=query, limit=10)]
                            first += keys[:1] == [key]
                            reciprocal += 1 / (keys.index(key) + 1) if key in keys else 0.0
                        rows.append((window, sentences, "text field in the title" if fields else "JSON only", mode,
                                     f"{int(first)}/{len(FACTS)}", reciprocal / len(FACTS)))
                        store.close()
    print(f"{today()}, {machine_line()}\n{command_line()}\n")
    print(table(["window tokens", "filler sentences", "indexed", "mode", "first", "MRR@10"], rows))


if __name__ == "__main__":
    main()
