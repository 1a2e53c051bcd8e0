"""Make the example experiment's data: short news-like sentences on four topics, from templates written for lab.

A sentence's topic is the topic of the thing it is about ("a penalty kick": sports); half the time the person
and the place in it come from other topics ("the baker talked about a penalty kick in the data centre"), so a
model must learn which part of the sentence decides.

Deterministic (a fixed seed, no outside data): running it again rewrites the same train.jsonl, validation.jsonl
and test.jsonl byte for byte. Each line is {"text": ..., "label": TOPIC}. Templates are shared by all topics
and every topic's words are split into disjoint halves for training and for evaluation, so a model cannot pass
by memorising sentences: it has to know that "the striker" and "the goalkeeper" belong to the same topic.

    python experiments/exp1/data/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240501
SIZES = {"train": 320, "validation": 160, "test": 160}
MIXED = 0.5  # how often the person and the place come from another topic than the thing

# topic -> (actors, things, places): each list is split in half, train and evaluation words.
TOPICS = {
    "sports": (
        ["the striker", "the goalkeeper", "the coach", "the captain", "the referee", "the sprinter",
         "the tennis champion", "the rookie pitcher", "the marathon runner", "the defender", "the cyclist", "the swimmer"],
        ["the final match", "a penalty kick", "the league title", "a relay race", "the championship trophy",
         "a hat trick", "the playoff series", "a world record", "the season opener", "the transfer window",
         "the half-time score", "a gold medal"],
        ["at the stadium", "on the pitch", "at the velodrome", "in the locker room", "at the arena",
         "on the track", "at the training ground", "in the final round"],
    ),
    "weather": (
        ["the forecaster", "the meteorologist", "the storm chaser", "the weather service", "the coast guard",
         "the climate station", "the flood warden", "the harbour master", "the ski patrol", "the farmer", "the pilot", "the lifeguard"],
        ["heavy rain", "a cold front", "the heat wave", "strong gusts of wind", "a thunderstorm", "thick fog",
         "the first snowfall", "a tropical cyclone", "freezing drizzle", "a dry spell", "hail the size of marbles", "the humidity"],
        ["along the coast", "over the mountains", "across the valley", "in the northern plains", "over the bay",
         "near the airport", "in the river basin", "on the highlands"],
    ),
    "cooking": (
        ["the chef", "the pastry cook", "the baker", "the food critic", "the line cook", "the sommelier",
         "the home cook", "the butcher", "the cheesemaker", "the restaurant owner", "the kitchen porter", "the barista"],
        ["a slow-cooked stew", "the sourdough loaf", "a lemon tart", "the tasting menu", "a spicy curry",
         "the roast chicken", "a chocolate souffle", "the fresh pasta", "a mushroom risotto", "the seafood platter",
         "a vegetable broth", "the apple pie"],
        ["in the kitchen", "at the bakery", "at the night market", "in the test kitchen", "at the bistro",
         "in the food hall", "at the farm shop", "at the cooking school"],
    ),
    "technology": (
        ["the lead engineer", "the start-up", "the chip maker", "the software team", "the security researcher",
         "the app developer", "the data scientist", "the network operator", "the robotics lab", "the cloud provider",
         "the hardware designer", "the open-source project"],
        ["a new processor", "the software update", "a data breach", "the smartphone", "a machine learning model",
         "the battery design", "an encryption flaw", "the operating system", "a quantum computer", "the fibre network",
         "a programming language", "the server outage"],
        ["at the trade show", "in the data centre", "in the research lab", "at the developer conference",
         "in the app store", "on the company blog", "in the server room", "at the hackathon"],
    ),
}

TEMPLATES = [
    "{actor} talked about {thing} {place}.",
    "Yesterday {actor} was surprised by {thing} {place}.",
    "{place_cap}, {actor} could not stop thinking about {thing}.",
    "Reports say {actor} expects {thing} next week.",
    "Nobody expected {thing} {place}, said {actor}.",
    "{actor_cap} will comment on {thing} later today.",
    "After a long wait, {thing} finally arrived {place}.",
    "{actor_cap} and {other} disagreed about {thing}.",
    "It was a quiet morning until {thing} {place}.",
    "Everyone was asking {actor} about {thing}.",
]


def _halves(words, rng):
    words = list(words)
    rng.shuffle(words)
    mid = len(words) // 2
    return words[:mid], words[mid:]


def make(seed: int = SEED) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    vocab = {}
    for topic, lists in TOPICS.items():
        train_part, eval_part = zip(*(_halves(words, rng) for words in lists))
        vocab[topic] = {"train": train_part, "eval": eval_part}
    out = {}
    for split, size in SIZES.items():
        part = "train" if split == "train" else "eval"
        rows = []
        for i in range(size):
            topic = list(TOPICS)[i % len(TOPICS)]
            things = vocab[topic][part][1]
            # The label is the topic of the thing; half the time the people and the place belong to other topics.
            actors = vocab[rng.choice(list(TOPICS)) if rng.random() < MIXED else topic][part][0]
            places = vocab[rng.choice(list(TOPICS)) if rng.random() < MIXED else topic][part][2]
            actor, other = rng.sample(actors, 2)
            place = rng.choice(places)
            text = rng.choice(TEMPLATES).format(
                actor=actor, actor_cap=actor[0].upper() + actor[1:], other=other,
                thing=rng.choice(things), place=place, place_cap=place[0].upper() + place[1:],
            )
            rows.append({"text": text[0].upper() + text[1:], "label": topic})
        rng.shuffle(rows)
        out[split] = rows
    return out


def main() -> None:
    for split, rows in make().items():
        path = HERE / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{path.name}: {len(rows)} rows, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
