"""English sentences for the synthetic (TTS) speech corpus, generated from small word lists.

Deterministic: ``sentences(n)`` always returns the same list, so TTS clips and their manifest
texts are reproducible. The grammar mixes statements, questions, numbers and dates so the voices
cover varied prosody and phonemes.
"""

from __future__ import annotations

import random

_SUBJECTS = [
    "the old fisherman", "my neighbour", "a tired student", "the young doctor", "our teacher", "the pilot",
    "a small child", "the baker", "her brother", "the night guard", "a quiet engineer", "the mayor",
    "the gardener", "his grandmother", "a lost tourist", "the radio host", "the captain", "a busy nurse",
    "the farmer", "my cousin", "the librarian", "a street musician", "the chef", "the postman",
]
_VERBS = [
    "carried", "painted", "found", "repaired", "sold", "opened", "measured", "borrowed", "described",
    "forgot", "cleaned", "ordered", "watched", "delivered", "counted", "hid", "tested", "moved",
    "wrapped", "explained", "photographed", "collected", "returned", "followed",
]
_OBJECTS = [
    "a heavy wooden box", "the broken window", "seven yellow apples", "an ancient map", "the blue bicycle",
    "a letter from abroad", "the kitchen table", "twelve glass bottles", "a silver key", "the garden fence",
    "a bag of warm bread", "the tall lighthouse", "an empty suitcase", "the village clock", "a pair of boots",
    "the green umbrella", "a box of matches", "the narrow bridge", "a basket of fish", "the heavy anchor",
]
_PLACES = [
    "near the harbour", "before sunrise", "in the rain", "behind the station", "after lunch",
    "under the bridge", "at the market", "on a cold morning", "beside the river", "in the library",
    "during the storm", "at the edge of town", "on the second floor", "late last night", "in the mountains",
]
_QUESTIONS = [
    "Did {s} really say that {o} was {adj}?", "Why would {s} leave {o} {p}?",
    "Have you seen {o} that {s} {v}?", "Where did {s} put {o}?", "Is it true that {s} {v} {o} {p}?",
]
_ADJECTIVES = ["expensive", "missing", "too small", "still wet", "perfectly fine", "completely ruined", "new"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_NUMBER_TEMPLATES = [
    "The train to platform {a} leaves at {h} {m}.", "Please call me back at {a}{b} {c}{d}.",
    "We counted {n} birds on the {day} of {month}.", "The total comes to {n} dollars and {c}{d} cents.",
    "Room {a}{b}{c} is on the left, after door {d}.", "It was {n} degrees outside on {month} {day}.",
]
_DAYS = ["first", "second", "third", "fourth", "fifth", "ninth", "twelfth", "twentieth", "thirty-first"]


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    """``n`` distinct sentences (statements, questions and numbers), the same for the same seed."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        roll = rng.random()
        s, v, o, p = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_PLACES)
        if roll < 0.6:
            text = f"{s.capitalize()} {v} {o} {p}."
        elif roll < 0.8:
            text = rng.choice(_QUESTIONS).format(s=s, v=v, o=o, p=p, adj=rng.choice(_ADJECTIVES))
            text = text[0].upper() + text[1:]
        else:
            text = rng.choice(_NUMBER_TEMPLATES).format(
                a=rng.randint(1, 9), b=rng.randint(0, 9), c=rng.randint(0, 9), d=rng.randint(0, 9),
                h=rng.randint(1, 12), m=rng.choice(["fifteen", "thirty", "forty-five", "o'clock"]),
                n=rng.randint(2, 990), day=rng.choice(_DAYS), month=rng.choice(_MONTHS))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
