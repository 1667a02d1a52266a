"""AMQP 0-9-1 topic-exchange matching, as RabbitMQ does it.

A routing key and a binding pattern are lists of words separated by
``.``; the empty string has no words at all (so ``""`` is matched by the
patterns ``""`` and ``"#"`` only).  In a pattern the word ``*`` stands for
exactly one word and ``#`` for zero or more words; ``*`` and ``#`` inside a
longer word (``vm*``) are ordinary characters.
"""

from __future__ import annotations


def words(key: str) -> list[str]:
    """Split a routing key or pattern into words (``""`` has none)."""
    return key.split(".") if key else []


def matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding ``pattern`` matches ``routing_key``."""
    pat = words(pattern)
    # The set of pattern positions reachable after the words read so far,
    # closed under skipping a ``#`` (which may match zero words).
    states = _closure(pat, {0})
    for word in words(routing_key):
        following: set[int] = set()
        for i in states:
            if i == len(pat):
                continue
            if pat[i] == "#":
                following.add(i)  # ``#`` swallows this word and stays
            elif pat[i] == "*" or pat[i] == word:
                following.add(i + 1)
        if not following:
            return False
        states = _closure(pat, following)
    return len(pat) in states


def _closure(pat: list[str], states: set[int]) -> set[int]:
    result = set(states)
    todo = list(states)
    while todo:
        i = todo.pop()
        if i < len(pat) and pat[i] == "#" and i + 1 not in result:
            result.add(i + 1)
            todo.append(i + 1)
    return result
