"""Synthetic claimant messages, each with the category the claims team gave it.

A message is what a claimant writes to the insurer (a web form, an e-mail), with what
the claims system knows beside it: the policy and the claim's amount. Its category is
one of :data:`CATEGORIES`:

- ``new_claim``: something happened and the claimant wants cover for it;
- ``status_question``: where is my claim, my payment, the assessor;
- ``complaint``: the claimant is unhappy with how they were treated;
- ``fraud_signal``: the message carries a red flag a claims handler must pass to the
  fraud team (paying in cash, a backdated policy, an inflated estimate, items added
  to a theft).

Messages are filled from templates with a seeded :class:`random.Random`, so the same
seed gives the same messages on every machine. Most say what they are in plain words
(the words the mock LLM's rules look for, see ``mock.yaml``); a few are ambiguous the
way real mail is (an apology for complaining in a status question, a complaint with
no angry word in it), so no prompt gets everything right. Fraud signals are rare, as
they are in a claims inbox: a model can miss all of them and still look accurate
overall, which is why the service's gates look at them apart.

:func:`write_cases` writes them as a cases file for ``prodgate evaluate`` (JSON
Lines: ``inputs``, ``label``, ``id``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: The categories, in the service's label order.
CATEGORIES: tuple[str, ...] = ("complaint", "new_claim", "status_question", "fraud_signal")
#: The share of each category in a generated inbox (the order of :data:`CATEGORIES`).
SHARES: tuple[float, ...] = (0.27, 0.35, 0.28, 0.10)
#: Of the messages of each category, the share written ambiguously (see the module).
AMBIGUOUS: dict[str, float] = {
    "complaint": 0.08,
    "new_claim": 0.05,
    "status_question": 0.06,
    "fraud_signal": 0.03,
}
#: The field of a case's inputs that holds the team's category, for the spec's cohorts
#: (evaluation slices cases by their inputs). The prompt never shows it to the model.
REVIEWED = "reviewed_as"

_ITEMS = (
    "car",
    "van",
    "roof",
    "kitchen",
    "laptop",
    "phone",
    "bicycle",
    "garden fence",
    "caravan",
    "boiler",
    "front door",
    "camera",
)
_EVENTS = (
    "a burst pipe that flooded the kitchen",
    "a break-in at my flat",
    "hail damage to my car",
    "a tree that fell on the garage",
    "my bicycle being stolen from the station",
    "a fire in the back bedroom",
    "a car that hit my garden wall",
    "water damage from the flat upstairs",
    "storm damage to the roof",
    "my suitcase being stolen at the airport",
)
_WHEN = (
    "last night",
    "yesterday",
    "this morning",
    "on Saturday",
    "two days ago",
    "over the weekend",
)
_AGO = ("last week", "two weeks ago", "a month ago", "ten days ago", "in March")
_PEOPLE = ("three", "four", "five")

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "new_claim": (
        "I would like to report {event} {when}.",
        "My {item} was stolen {when} and I want to file a claim.",
        "Hello, my {item} was damaged {when}. What do I need to send you to get this started?",
        "There was an accident {when}: {event}. I have photos of the damage.",
        "I need to report {event}. Nobody was hurt but the {item} is ruined.",
    ),
    "status_question": (
        "Is there any update on my claim for the {item}? I sent the photos {ago}.",
        "When will the payment for my {item} arrive?",
        "Could you tell me the status of the claim I made {ago}?",
        "How long will the assessment of my {item} take?",
        "Has my claim been approved yet? I sent everything {ago}.",
    ),
    "complaint": (
        "Your adjuster was rude to me on the phone {ago}. I want to make a formal complaint.",
        "I am very disappointed with how my {item} claim was handled.",
        "It is unacceptable that I had to explain the same thing to {people} different people.",
        "I am fed up with being passed from one department to the next about my {item}.",
        "This is the worst service I have had from any company. Nobody reads my emails.",
    ),
    "fraud_signal": (
        "Can you pay the {item} claim in cash? I would rather it did not go through my bank.",
        "My cousin's garage can write a higher estimate for the {item} if that helps.",
        "The damage happened before the policy started, but can we say it was {when}?",
        "Could you backdate my policy so that it covers {event}?",
        "I can add a few more items to the list of stolen things if that makes it simpler.",
        "Let us keep this between us: the receipt for the {item} can say whatever you need.",
    ),
}
#: Written so that their plain words point to another category than the team's.
_AMBIGUOUS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "new_claim": ("When will someone come to look at {event}? It happened {when}.",),
    "status_question": ("Sorry to complain again, but is there any update on my {item}?",),
    "complaint": (
        "Nobody has called me back in {people} weeks and I paid for the {item} myself.",
        "I was promised a call {ago}. I am still waiting and I have had enough.",
    ),
    "fraud_signal": ("A friend will tell you he saw it happen, even though he was not there.",),
}


@dataclass(frozen=True)
class Message:
    """One claimant message and the category the claims team gave it."""

    id: str
    message: str
    policy_id: str
    claim_amount: float
    category: str

    @property
    def inputs(self) -> dict[str, Any]:
        """The service's input: what the claims system sends with the message."""
        return {
            "message": self.message,
            "policy_id": self.policy_id,
            "claim_amount": self.claim_amount,
        }

    def case(self) -> dict[str, Any]:
        """The message as a line of a cases file (see :func:`write_cases`)."""
        return {
            "id": self.id,
            "inputs": {**self.inputs, REVIEWED: self.category},
            "label": self.category,
        }


def _amount(rng: random.Random, category: str) -> float:
    """A claim's amount: a skewed body, larger for claims someone would inflate."""
    median = 6_000.0 if category == "fraud_signal" else 2_400.0
    return round(min(50.0 + median * rng.lognormvariate(0.0, 0.9), 500_000.0), 2)


def messages(n: int, seed: int = 0) -> Iterator[Message]:
    """*n* messages drawn with *seed*: the same seed, the same messages."""
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    rng = random.Random(seed)
    for i in range(n):
        category = rng.choices(CATEGORIES, weights=SHARES)[0]
        ambiguous = rng.random() < AMBIGUOUS[category]
        templates = (_AMBIGUOUS_TEMPLATES if ambiguous else _TEMPLATES)[category]
        text = rng.choice(templates).format(
            item=rng.choice(_ITEMS),
            event=rng.choice(_EVENTS),
            when=rng.choice(_WHEN),
            ago=rng.choice(_AGO),
            people=rng.choice(_PEOPLE),
        )
        yield Message(
            id=f"msg-{seed}-{i:05d}",
            message=text,
            policy_id=f"POL-{rng.randrange(100_000, 1_000_000)}",
            claim_amount=_amount(rng, category),
            category=category,
        )


def generate(n: int, seed: int = 0) -> list[Message]:
    """*n* messages drawn with *seed*, as a list."""
    return list(messages(n, seed))


def write_cases(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Write *n* messages drawn with *seed* as a cases file (JSON Lines) at *path*.

    Each line: ``{"id", "inputs": {message, policy_id, claim_amount, reviewed_as},
    "label"}``. ``reviewed_as`` repeats the label among the inputs, because the spec's
    cohorts are conditions over inputs; no prompt uses it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        for message in messages(n, seed):
            out.write(orjson.dumps(message.case()) + b"\n")
    tmp.replace(path)
    return path
