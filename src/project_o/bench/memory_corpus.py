"""Text for measuring recall: a labelled set of facts and questions, and distractors.

::

    LABELLED          (fact, question) pairs: the question paraphrases the fact
                      with other words where it can; recall should put the fact
                      in the top 5 (top 1 ideally)
    distractors(n)    n synthetic facts from templates over the same kinds of
                      things (people, colours, servers, dates...), drawn with
                      random.Random(seed): the haystack the labelled facts hide in

The tests use the labelled set at small scale (quality of the default
embedder); ``project-o bench memory`` hides it among 10k and 100k
distractors and compares the index with an exact search.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["LABELLED", "distractors", "queries"]

#: (fact, paraphrased question)
LABELLED: Final[tuple[tuple[str, str], ...]] = (
    ("Alice's favourite colour is teal.", "What colour does Alice like best?"),
    ("The office wifi password is orange-kettle-42.", "What's the wifi password at the office?"),
    ("Bob is allergic to peanuts.", "Which food allergy does Bob have?"),
    ("The quarterly report is due on March 14.", "When is the quarterly report due?"),
    ("Carol lives in Lisbon with her two cats.", "Which city does Carol live in?"),
    ("The production database runs on PostgreSQL 16.",
     "Which database does production use?"),
    ("Dave's birthday is on the 3rd of July.", "When is Dave's birthday?"),
    ("The team standup happens every weekday at 9:30.", "What time is the daily standup?"),
    ("Eve prefers tea over coffee in the morning.", "Does Eve drink coffee or tea?"),
    ("The staging server is at staging.example.com.", "What is the staging server's address?"),
    ("Frank drives a blue electric car.", "What kind of car does Frank drive?"),
    ("The API rate limit is 600 requests per minute.",
     "How many requests per minute does the API allow?"),
    ("Grace speaks Portuguese and Japanese.", "Which languages does Grace speak?"),
    ("The backup job runs nightly at 2 am.", "When do the nightly backups run?"),
    ("Heidi manages the payments team.", "Who is the manager of the payments team?"),
    ("The office is closed on public holidays.", "Is the office open on public holidays?"),
    ("Ivan's flight to Berlin leaves on Friday.", "When does Ivan fly to Berlin?"),
    ("The project codename is Blue Heron.", "What is the codename of the project?"),
    ("Judy plays the cello in a community orchestra.",
     "Which instrument does Judy play in the orchestra?"),
    ("The invoice number for the October order is INV-2291.",
     "What was the invoice number of the October order?"),
    ("Mallory's dog is a border collie named Pixel.", "What breed is Mallory's dog?"),
    ("The support hotline is staffed from 8 am to 8 pm.",
     "What are the opening hours of the support hotline?"),
    ("Niaj ran the Boston marathon in 3 hours 12 minutes.",
     "How long did the marathon take Niaj?"),
    ("The cluster has 48 GPUs in total.", "How many GPUs does the cluster have?"),
    ("Olivia is vegetarian and does not eat fish.", "Does Olivia eat fish?"),
    ("The deployment freeze starts on December 20.", "When does the deployment freeze begin?"),
    ("Peggy studied physics at the University of Edinburgh.",
     "Where did Peggy study physics?"),
    ("The coffee machine on floor 3 is broken.", "Which floor has the broken coffee machine?"),
    ("Rupert's phone number ends in 4471.", "What are the last digits of Rupert's phone number?"),
    ("The main repository is hosted on GitLab.", "Where is the main repository hosted?"),
    ("Sybil's favourite book is Dune by Frank Herbert.", "Which book does Sybil love most?"),
    ("The printer on the second floor needs new toner.",
     "What does the second floor printer need?"),
)

_NAMES: Final = str.split(
    "Aaron Beth Chloe Dmitri Elena Farid Gita Hugo Ines Jonas Kenji Lena Marco Nora Omar "
    "Priya Quinn Rosa Sami Tara Umar Vera Wen Xavier Yara Zoltan Amir Bianca Cyrus Dana "
    "Emil Fiona Gustav Hana Igor Jade Kofi Lucia Mateo Nadia Oskar Pavel Rhea Stefan Tomas"
)
_COLOURS: Final = str.split("red green amber violet crimson navy ochre silver olive coral")
_CITIES: Final = str.split("Oslo Madrid Nairobi Lima Hanoi Krakow Austin Porto Turin Osaka Quito")
_THINGS: Final = str.split(
    "router laptop badge monitor bicycle kettle locker parking-spot notebook headset"
)
_SERVICES: Final = str.split("billing search auth metrics ledger inventory mailer gateway cache")
_MONTHS: Final = str.split(
    "January February March April May June July August September October November December"
)
_DAYS: Final = str.split("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
_FOODS: Final = str.split("shellfish gluten dairy soy sesame eggs strawberries kiwi")
_HOBBIES: Final = str.split("chess climbing pottery sailing baking karate origami fencing")

_TEMPLATES: Final = (
    "{name}'s favourite colour is {colour}.",
    "{name} lives in {city} and works on the {service} service.",
    "{name}'s birthday is on {day} {month}.",
    "{name} is allergic to {food}.",
    "The {service} service runs on host {host}.",
    "The {service} dashboard is at {service}-{n}.internal.example.",
    "{name} left a {thing} in meeting room {n}.",
    "The {service} on-call rotation changes every {weekday}.",
    "{name} flies to {city} on {weekday}.",
    "{name} took up {hobby} in {month}.",
    "Order {n} for {name} was shipped to {city}.",
    "The {thing} on floor {floor} was replaced in {month}.",
    "{name} owns a {colour} {thing}.",
    "Ticket {n} about the {service} service is assigned to {name}.",
    "{name} and {other} meet every {weekday} to review the {service} roadmap.",
)


def distractors(count: int, seed: int) -> list[str]:
    """``count`` synthetic facts (the same list for the same seed)."""
    rng = random.Random(seed)
    return [_fact(rng) for _ in range(count)]


def _fact(rng: random.Random) -> str:
    return rng.choice(_TEMPLATES).format(
        name=rng.choice(_NAMES),
        other=rng.choice(_NAMES),
        colour=rng.choice(_COLOURS),
        city=rng.choice(_CITIES),
        service=rng.choice(_SERVICES),
        day=rng.randint(1, 28),
        month=rng.choice(_MONTHS),
        food=rng.choice(_FOODS),
        host=f"{rng.choice(_SERVICES)}-{rng.randint(1, 99):02d}",
        thing=rng.choice(_THINGS),
        weekday=rng.choice(_DAYS),
        hobby=rng.choice(_HOBBIES),
        n=rng.randint(100, 99_999),
        floor=rng.randint(1, 12),
    )


def queries(count: int, seed: int) -> list[str]:
    """``count`` questions in the distractors' vocabulary (for latency and overlap)."""
    rng = random.Random(seed)
    asks = (
        "What is {name}'s favourite colour?",
        "Where does {name} live?",
        "Who works on the {service} service?",
        "When is {name}'s birthday?",
        "Which host runs the {service} service?",
        "What did {name} leave in the meeting room?",
        "When does {name} fly to {city}?",
        "What hobby did {name} take up?",
        "Which ticket about {service} is assigned to {name}?",
    )
    return [
        rng.choice(asks).format(
            name=rng.choice(_NAMES), service=rng.choice(_SERVICES), city=rng.choice(_CITIES)
        )
        for _ in range(count)
    ]
