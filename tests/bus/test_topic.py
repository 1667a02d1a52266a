"""Tests for ``snfd.bus.topic``: RabbitMQ's topic matching rules."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from snfd.bus.topic import matches, words


def reference(pattern: list[str], key: list[str]) -> bool:
    """The rules written as plainly as possible (exponential, fine here)."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference(rest, key) or (bool(key) and reference(pattern,
                                                                key[1:]))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference(rest, key[1:])


# Few distinct words so that random patterns and keys often match; the
# empty word and a literal "*" in keys are legal and included.
_pattern_words = st.lists(st.sampled_from(["a", "b", "", "*", "#"]),
                          max_size=6)
_key_words = st.lists(st.sampled_from(["a", "b", "", "*"]), max_size=6)


class WordsTests(unittest.TestCase):
    def test_empty_key_has_no_words(self):
        """The empty routing key has zero words, not one empty word."""
        self.assertEqual(words(""), [])

    def test_dots_separate_words(self):
        """Words are split on every dot, keeping empty words."""
        self.assertEqual(words("a..b."), ["a", "", "b", ""])


class MatchesTests(unittest.TestCase):
    def test_examples(self):
        """The documented AMQP topic examples (and edge cases) hold."""
        cases = [
            ("a.*", "a.b", True),
            ("a.*", "a", False),
            ("a.*", "a.b.c", False),
            ("a.#", "a", True),
            ("a.#", "a.b.c", True),
            ("#", "", True),
            ("#", "x.y", True),
            ("", "", True),
            ("", "a", False),
            ("*", "", False),
            ("*", "a", True),
            ("*.b.#", "x.b", True),
            ("#.error", "vm.1.error", True),
            ("#.error", "error", True),
            ("#.error", "error.vm", False),
            ("a.#.z", "a.z", True),
            ("a.#.z", "a.b.c.z", True),
            ("a.#.z", "a.b.c", False),
            ("#.#", "", True),
            ("a*", "ab", False),
            ("a*", "a*", True),
            ("a.*.b", "a..b", True),
            ("vm.create", "vm.create", True),
            ("vm.create", "vm.delete", False),
        ]
        for pattern, key, expected in cases:
            self.assertEqual(matches(pattern, key), expected,
                             f"{pattern!r} vs {key!r}")

    @given(_pattern_words, _key_words)
    def test_agrees_with_reference(self, pattern, key):
        """``matches`` agrees with the plain recursive definition."""
        p, k = ".".join(pattern), ".".join(key)
        self.assertEqual(matches(p, k), reference(words(p), words(k)))

    @given(_key_words)
    def test_hash_matches_everything(self, key):
        """``#`` matches every routing key."""
        self.assertTrue(matches("#", ".".join(key)))

    @given(_key_words)
    def test_key_matches_itself_without_wildcards(self, key):
        """A key without ``#`` words, used as a pattern, matches itself."""
        k = ".".join(key)
        self.assertTrue(matches(k, k))
