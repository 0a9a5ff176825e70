"""The Stanford Sentiment Treebank's PTB trees: parse them, read a file of them, and put a tree's
sentence in the form of the SST-2 CSVs. Plain Python, used by the phrase-level data set
(:mod:`memlab.data.text_sources`) and the typicality study (:mod:`memlab.studies.typicality`).

Every node carries a sentiment label 0-4: 0-1 negative, 2 neutral, 3-4 positive.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator

NEGATIVE_LABELS = frozenset({0, 1})
POSITIVE_LABELS = frozenset({3, 4})

# PTB escapes -> the characters they stand for (brackets, slashes, stars, quotes).
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
                "``": '"', "''": '"'}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class Node:
    """A labelled tree node: a phrase with ``children`` or a pre-terminal with a ``word``."""

    label: int
    children: tuple["Node", ...] = ()
    word: str | None = None

    @property
    def is_leaf(self) -> bool:
        return self.word is not None

    def iter_nodes(self) -> Iterator["Node"]:
        """Every node, pre-order, without recursion (SST trees can be 50+ levels deep)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def words(self) -> list[str]:
        return [n.word for n in self.iter_nodes() if n.is_leaf]


def parse_tree(line: str) -> Node:
    """Parse one PTB bracketed tree, e.g. ``(3 (2 It) (4 (4 rocks) (2 !)))``, iteratively.

    Words are kept as written (``-LRB-``, ``\\/`` stay escaped; :func:`tree_sentence` undoes them);
    a word of several tokens (SST's ``(2 2 1\\/2)``) is kept with single spaces.
    Raises ``ValueError`` with the position on malformed input.
    """
    tokens = _TOKEN.findall(line)
    if not tokens:
        raise ValueError("empty tree")
    # Each open frame: [label, children list, word or None].
    stack: list[list] = []
    root: Node | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if root is not None:
                raise ValueError(f"text after the end of the tree at token {i}: {tokens[i]!r}")
            if i + 1 >= len(tokens) or tokens[i + 1] in "()":
                raise ValueError(f"missing label after '(' at token {i}")
            try:
                label = int(tokens[i + 1])
            except ValueError:
                raise ValueError(f"label {tokens[i + 1]!r} at token {i + 1} is not an integer") from None
            stack.append([label, [], None])
            i += 2
            continue
        if tok == ")":
            if not stack:
                raise ValueError(f"unbalanced ')' at token {i}")
            label, children, word = stack.pop()
            if word is None and not children:
                raise ValueError(f"node with label {label} has neither a word nor children (token {i})")
            node = Node(label, tuple(children), word)
            if stack:
                stack[-1][1].append(node)
            else:
                root = node
            i += 1
            continue
        # A word: only directly inside a pre-terminal. SST has a few words with a space in them,
        # e.g. "(2 2 1\\/2)", so further tokens before the ')' extend the word.
        if not stack or stack[-1][1]:
            raise ValueError(f"unexpected word {tok!r} at token {i}")
        stack[-1][2] = tok if stack[-1][2] is None else f"{stack[-1][2]} {tok}"
        i += 1
    if stack or root is None:
        raise ValueError("unbalanced tree: missing ')'")
    return root


def read_trees(path: str | os.PathLike) -> list[Node]:
    """All trees of a PTB file (one per line, blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [parse_tree(line) for line in f if line.strip()]


def _unescape(word: str) -> str:
    word = _PTB_ESCAPES.get(word, word)
    return word.replace("\\/", "/").replace("\\*", "*")


def tree_sentence(tree: Node) -> str:
    """The sentence of a tree: its words, PTB escapes undone, joined by single spaces."""
    return " ".join(_unescape(w) for w in tree.words())


def normalize_text(text: str) -> str:
    """Lower-case, replace every run of non-alphanumeric characters by one space, strip.

    Makes a treebank sentence (``"The 21st Century 's new `` Conan ''"``) equal to its SST-2 CSV
    form (``"the 21st century s new conan"``): quotes, brackets, slashes and hyphens become word
    breaks; accented letters are kept (NFC); the PTB escape words are removed.
    """
    text = unicodedata.normalize("NFC", text)
    for escaped in ("-LRB-", "-RRB-", "-LSB-", "-RSB-", "-LCB-", "-RCB-"):
        text = text.replace(escaped, " ")
    text = text.lower().replace("_", " ")
    return " ".join(re.sub(r"[\W_]+", " ", text).split())
