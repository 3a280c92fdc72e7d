"""A small phrase-structure grammar that writes the ten SentEval probing tasks with exact labels.

Sentences are built as trees, so every label is read off the tree that produced the words:

* ``S -> [prefix] NP [ADVP] VP .`` with prefixes ADVP, PP, SBAR (``when`` + clause), CC, INTJ;
  coordination ``S -> S [,] CC S .``; imperatives ``S -> VP .``.
* ``NP -> DT JJ* NN [PP | SBAR]`` with ``PP -> IN NP`` and the relative clause
  ``SBAR -> WHNP(that) S(VP(V NP))``; modifiers always attach to the nearest noun, so the
  words have one parse (see :mod:`vlprobe.testing.senteval_labels`).
* The *main clause* is the clause the root S dominates directly (the first conjunct of a
  coordination, the clause after a leading SBAR).

TreeDepth is the number of nodes on the longest path from the root S down to a word, counting
S and the word (= edges from a PTB ``ROOT`` above S to the deepest word). ``the dog saw a cat .``
has depth 5 (S VP NP NN cat); each PP on the path adds 2 (PP NP), each relative clause 4
(SBAR S VP NP), so depths 5-12 come from modifier chains on the subject (even) or object (odd).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vlprobe.synthetic.senteval_lexicon import (
    ADJECTIVES,
    CONJUNCTIONS,
    DET_PL,
    DET_SG,
    INTERJECTIONS,
    LEAD_ADVERBS,
    MID_ADVERBS,
    NOUNS,
    ORDER_MARKERS,
    PREPOSITIONS,
    RELATIVE,
    SUBORDINATORS,
    TOP_CONSTITUENTS,
    TRAIL_ADVERBS,
    VERBS,
    WC_TARGETS,
    Noun,
    Verb,
)

LENGTH_BINS: tuple[tuple[int, int], ...] = ((5, 8), (9, 12), (13, 16), (17, 20), (21, 25), (26, 28))
"""SentLen label k: the bin (inclusive token counts, the final ``.`` counted) of the length."""
DEPTHS: tuple[int, ...] = tuple(range(5, 13))
MIN_TOKENS, MAX_TOKENS = 5, 28

_SECOND_LEAD = tuple(w for w in LEAD_ADVERBS if w in ORDER_MARKERS)
_SECOND_TRAIL = tuple(w for w in TRAIL_ADVERBS if w in ORDER_MARKERS)
_FIRST_LEAD = tuple(w for w in LEAD_ADVERBS if w not in ORDER_MARKERS)
_GENERIC_TEMPLATES = (
    ("NP_VP_.", 6),
    *((t, 1) for t in TOP_CONSTITUENTS if t not in ("NP_VP_.", "VP_.", "OTHER")),
)
_OTHER_TEMPLATES = ("INTJ_,_NP_VP_.", "CC_ADVP_NP_VP_.", "ADVP_NP_ADVP_VP_.", "PP_,_ADVP_NP_VP_.")


class Node:
    """A parse-tree node; a preterminal has a ``word`` and no children."""

    __slots__ = ("label", "children", "word")

    def __init__(self, label: str, children: list[Node] | None = None, word: str = "") -> None:
        self.label = label
        self.children = children or []
        self.word = word

    def preterminals(self) -> list[Node]:
        if self.word:
            return [self]
        return [p for c in self.children for p in c.preterminals()]

    def depth(self) -> int:
        """Nodes on the longest path to a word, counting this node and the word."""
        if self.word:
            return 2
        return 1 + max(c.depth() for c in self.children)


def linearise(root: Node) -> tuple[list[str], list[str]]:
    """Words and their preterminal labels; ``a`` becomes ``an`` before a vowel."""
    pre = root.preterminals()
    words = [p.word for p in pre]
    for i, p in enumerate(pre[:-1]):
        if p.label == "DT" and p.word in ("a", "an"):
            words[i] = "an" if words[i + 1][0] in "aeiou" else "a"
    return words, [p.label for p in pre]


@dataclass
class _NounSlot:
    node: Node
    allowed: frozenset[str] | None  # classes the grammar requires here (None: any)
    tag: str  # NN / NNS


@dataclass
class _VerbSlot:
    node: Node
    verb: Verb
    form: str  # base / s3 / past
    subj_cls: str
    obj_cls: str


@dataclass
class GeneratedSentence:
    tokens: list[str]
    tags: list[str]
    label: str
    tree: Node

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


class _Builder:
    """Builds one tree, recording the slots that WC insertion and SOMO replacement edit."""

    def __init__(self, rng: random.Random, nouns: Sequence[Noun], adjectives: Sequence[str]):
        self.rng = rng
        self.nouns_by_cls: dict[str, list[Noun]] = {}
        for n in nouns:
            self.nouns_by_cls.setdefault(n.cls, []).append(n)
        self.adjectives = list(adjectives)
        self.noun_slots: list[_NounSlot] = []
        self.verb_slots: list[_VerbSlot] = []
        self.nps: list[Node] = []

    # -- phrases
    def chain(self, units: int) -> list[str]:
        """A modifier chain worth ``units`` depth units: PP = 1, relative clause = 2."""
        out: list[str] = []
        while units > 0:
            kind = "REL" if units >= 2 and self.rng.random() < 0.4 else "PP"
            out.append(kind)
            units -= 2 if kind == "REL" else 1
        return out

    def n_adjectives(self) -> int:
        r = self.rng.random()
        return 0 if r < 0.65 else 1 if r < 0.92 else 2

    def verb_form(self, verb: Verb, tense: str, tag: str) -> tuple[str, str, str]:
        if tense == "PAST":
            return verb.past, "past", "VBD"
        return (verb.s3, "s3", "VBZ") if tag == "NN" else (verb.base, "base", "VBP")

    def np(
        self, allowed: frozenset[str] | None, tag: str | None, chain: Sequence[str]
    ) -> tuple[Node, str, str]:
        """``NP -> DT JJ* NN [PP | SBAR]``; returns the node, the head's class and its tag."""
        rng = self.rng
        classes = sorted((allowed or frozenset("HAOP")) & set(self.nouns_by_cls))
        if chain and chain[0] == "REL":
            if any(c in "HA" for c in classes):
                classes = [c for c in classes if c in "HA"]
            else:  # no verb takes an object/place subject: two PPs add the same depth
                chain = ["PP", "PP", *chain[1:]]
        cls = rng.choice(classes)
        noun = rng.choice(self.nouns_by_cls[cls])
        tag = tag or rng.choice(("NN", "NNS"))
        det = rng.choice(DET_SG if tag == "NN" else DET_PL)
        k = self.n_adjectives()
        adjs = rng.sample(self.adjectives, k) if k else []
        head = Node(tag, word=noun.sg if tag == "NN" else noun.pl)
        children = [Node("DT", word=det), *(Node("JJ", word=a) for a in adjs), head]
        slot_allowed = allowed
        if chain and chain[0] == "PP":
            sub = self.np(None, None, chain[1:])[0]
            children.append(Node("PP", [Node("IN", word=rng.choice(PREPOSITIONS)), sub]))
        elif chain and chain[0] == "REL":
            verb = rng.choice([v for v in VERBS if cls in v.subj])
            word, form, vtag = self.verb_form(verb, rng.choice(("PAST", "PRES")), tag)
            vnode = Node(vtag, word=word)
            obj, obj_cls, _ = self.np(verb.obj, None, chain[1:])
            self.verb_slots.append(_VerbSlot(vnode, verb, form, cls, obj_cls))
            whnp = Node("WHNP", [Node("WDT", word=RELATIVE)])
            children.append(Node("SBAR", [whnp, Node("S", [Node("VP", [vnode, obj])])]))
            slot_allowed = verb.subj if allowed is None else allowed & verb.subj
        node = Node("NP", children)
        self.noun_slots.append(_NounSlot(head, slot_allowed, tag))
        self.nps.append(node)
        return node, cls, tag

    def clause(
        self,
        tense: str,
        subj_tag: str | None = None,
        obj_tag: str | None = None,
        units: tuple[int, int] = (0, 0),
        lead: str | None = None,
        lead_comma: bool = False,
        mid: bool = False,
        trail: str | None = None,
    ) -> list[Node]:
        """The children of one clause: ``[ADVP [,]] NP [ADVP] VP``."""
        rng = self.rng
        verb = rng.choice(VERBS)
        subj, subj_cls, subj_tag = self.np(verb.subj, subj_tag, self.chain(units[0]))
        word, form, vtag = self.verb_form(verb, tense, subj_tag)
        vnode = Node(vtag, word=word)
        obj, obj_cls, _ = self.np(verb.obj, obj_tag, self.chain(units[1]))
        self.verb_slots.append(_VerbSlot(vnode, verb, form, subj_cls, obj_cls))
        vp = [vnode, obj]
        if trail:
            vp.append(Node("ADVP", [Node("RB", word=trail)]))
        out: list[Node] = []
        if lead:
            out.append(Node("ADVP", [Node("RB", word=lead)]))
            if lead_comma:
                out.append(Node(",", word=","))
        out.append(subj)
        if mid:
            out.append(Node("ADVP", [Node("RB", word=rng.choice(MID_ADVERBS))]))
        out.append(Node("VP", vp))
        return out

    def imperative(self, units: int) -> list[Node]:
        verb = self.rng.choice([v for v in VERBS if "H" in v.subj])
        vnode = Node("VB", word=verb.base)
        obj, obj_cls, _ = self.np(verb.obj, None, self.chain(units))
        self.verb_slots.append(_VerbSlot(vnode, verb, "base", "H", obj_cls))
        return [Node("VP", [vnode, obj])]

    def pp(self) -> Node:
        sub = self.np(None, None, self.chain(self.rng.randint(0, 1)))[0]
        return Node("PP", [Node("IN", word=self.rng.choice(PREPOSITIONS)), sub])

    # -- whole sentences
    def sentence(
        self,
        template: str,
        tense: str,
        subj_tag: str | None = None,
        obj_tag: str | None = None,
        units: tuple[int, int] = (0, 0),
    ) -> Node:
        """The root S for a TopConst ``template``; the main clause gets tense/number/units."""
        rng = self.rng

        def main(**kw: object) -> list[Node]:
            return self.clause(tense, subj_tag, obj_tag, units, **kw)  # type: ignore[arg-type]

        def rb(words: Sequence[str]) -> str:
            return rng.choice(words)

        def other() -> list[Node]:
            tense2 = rng.choice(("PAST", "PRES"))
            return self.clause(tense2, units=(0, rng.randint(0, 1)))

        builders: dict[str, Callable[[], list[Node]]] = {
            "NP_VP_.": lambda: main(),
            "NP_ADVP_VP_.": lambda: main(mid=True),
            "ADVP_NP_VP_.": lambda: main(lead=rb(LEAD_ADVERBS)),
            "ADVP_,_NP_VP_.": lambda: main(lead=rb(LEAD_ADVERBS), lead_comma=True),
            "PP_NP_VP_.": lambda: [self.pp(), *main()],
            "PP_,_NP_VP_.": lambda: [self.pp(), Node(",", word=","), *main()],
            "SBAR_,_NP_VP_.": lambda: [
                Node("SBAR", [Node("IN", word=rb(SUBORDINATORS)), Node("S", other())]),
                Node(",", word=","),
                *main(),
            ],
            "S_CC_S_.": lambda: self.coordination(main, tense, comma=False),
            "S_,_CC_S_.": lambda: self.coordination(main, tense, comma=True),
            "CC_NP_VP_.": lambda: [Node("CC", word=rb(CONJUNCTIONS)), *main()],
            "VP_.": lambda: self.imperative(units[1]),
            "INTJ_,_NP_VP_.": lambda: [
                Node("INTJ", [Node("UH", word=rb(INTERJECTIONS))]),
                Node(",", word=","),
                *main(),
            ],
            "CC_ADVP_NP_VP_.": lambda: [
                Node("CC", word=rb(CONJUNCTIONS)),
                *main(lead=rb(LEAD_ADVERBS)),
            ],
            "ADVP_NP_ADVP_VP_.": lambda: main(lead=rb(LEAD_ADVERBS), mid=True),
            "PP_,_ADVP_NP_VP_.": lambda: [
                self.pp(),
                Node(",", word=","),
                *main(lead=rb(LEAD_ADVERBS)),
            ],
        }
        return Node("S", [*builders[template](), Node(".", word=".")])

    def coordination(self, main: Callable[..., list[Node]], tense: str, comma: bool) -> list[Node]:
        """``S1 [,] CC S2``: only the second clause carries an order marker (CoordInv)."""
        rng = self.rng
        first = Node("S", main(lead=rng.choice((None, None, *_FIRST_LEAD))))
        if rng.random() < 0.5:
            second = self.clause(tense, units=(0, rng.randint(0, 1)), lead=rng.choice(_SECOND_LEAD))
        else:
            second = self.clause(
                tense, units=(rng.randint(0, 1), 0), trail=rng.choice(_SECOND_TRAIL)
            )
        cc = Node("CC", word=rng.choice(CONJUNCTIONS))
        return [first, *([Node(",", word=",")] if comma else []), cc, Node("S", second)]

    def add_adjective(self, word: str | None = None) -> bool:
        """Put one more adjective into a random NP with fewer than two; False if none can."""
        open_nps = [n for n in self.nps if sum(c.label == "JJ" for c in n.children) < 2]
        if not open_nps:
            return False
        np_node = self.rng.choice(open_nps)
        have = {c.word for c in np_node.children if c.label == "JJ"}
        word = word or self.rng.choice([a for a in self.adjectives if a not in have])
        np_node.children.insert(1, Node("JJ", word=word))
        return True


class SentenceGenerator:
    """Draws sentences for one task and label; deterministic for the ``random.Random`` given."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _builder(self, word_content: bool = False) -> _Builder:
        if not word_content:
            return _Builder(self.rng, NOUNS, ADJECTIVES)
        targets = set(WC_TARGETS)
        nouns = [n for n in NOUNS if n.sg not in targets]
        return _Builder(self.rng, nouns, [a for a in ADJECTIVES if a not in targets])

    def _generic_template(self) -> str:
        names = [t for t, _ in _GENERIC_TEMPLATES]
        return self.rng.choices(names, weights=[w for _, w in _GENERIC_TEMPLATES])[0]

    def _units(self, high: int = 1) -> tuple[int, int]:
        return self.rng.randint(0, high), self.rng.randint(0, high)

    def _tense(self) -> str:
        return self.rng.choice(("PAST", "PRES"))

    def _done(self, root: Node, label: str) -> GeneratedSentence | None:
        tokens, tags = linearise(root)
        if not MIN_TOKENS <= len(tokens) <= MAX_TOKENS:
            return None
        return GeneratedSentence(tokens, tags, label, root)

    def generate(self, task: str, label: str) -> GeneratedSentence:
        """One sentence of ``task`` (a file stem, e.g. ``tree_depth``) whose label is ``label``."""
        make = getattr(self, f"_{task}")
        for _ in range(500):
            out = make(label)
            if out is not None:
                return out
        raise RuntimeError(f"could not generate a {task} sentence with label {label!r}")

    # -- one method per task: returns None to ask for another try
    def _sentence_length(self, label: str) -> GeneratedSentence | None:
        lo, hi = LENGTH_BINS[int(label)]
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        template = (
            self._generic_template() if lo > 8 else self.rng.choice(("NP_VP_.", "CC_NP_VP_."))
        )
        root = b.sentence(template, self._tense(), units=self._units(max(0, (lo - 6) // 4)))
        while len(linearise(root)[0]) < lo and b.add_adjective():
            pass
        n = len(linearise(root)[0])
        return self._done(root, label) if lo <= n <= hi else None

    def _word_content(self, label: str) -> GeneratedSentence | None:
        b = self._builder(word_content=True)
        root = b.sentence(self._generic_template(), self._tense(), units=self._units())
        if label in ADJECTIVES:
            if not b.add_adjective(label):
                return None
        else:
            noun = next(n for n in NOUNS if n.sg == label)
            slots = [
                s
                for s in b.noun_slots
                if s.tag == "NN" and (s.allowed is None or noun.cls in s.allowed)
            ]
            if not slots:
                return None
            self.rng.choice(slots).node.word = label
        return self._done(root, label)

    def _tree_depth(self, label: str) -> GeneratedSentence | None:
        d = int(label)
        if d % 2:  # object path: 5 + 2u; the subject stays shallower
            uo = (d - 5) // 2
            units = (self.rng.randint(0, uo), uo)
        else:  # subject path: 4 + 2u; the object stays shallower
            us = (d - 4) // 2
            units = (us, self.rng.randint(0, us - 1))
        template = self.rng.choice(("NP_VP_.", "NP_VP_.", "ADVP_NP_VP_.", "NP_ADVP_VP_."))
        root = _Builder(self.rng, NOUNS, ADJECTIVES).sentence(template, self._tense(), units=units)
        if root.depth() != d:
            raise AssertionError(f"planned depth {d}, built {root.depth()}")
        return self._done(root, label)

    def _top_constituents(self, label: str) -> GeneratedSentence | None:
        template = self.rng.choice(_OTHER_TEMPLATES) if label == "OTHER" else label
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        return self._done(b.sentence(template, self._tense(), units=self._units()), label)

    def _bigram_shift(self, label: str) -> GeneratedSentence | None:
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        root = b.sentence(self._generic_template(), self._tense(), units=self._units())
        out = self._done(root, label)
        if out is None or label == "O":
            return out
        coarse = [t[:2] for t in out.tags]  # NN/NNS -> NN, VBD/VBZ/VBP -> VB
        spots = [i for i in range(len(out.tokens) - 2) if coarse[i] != coarse[i + 1]]
        i = self.rng.choice(spots)
        out.tokens[i], out.tokens[i + 1] = out.tokens[i + 1], out.tokens[i]
        out.tags[i], out.tags[i + 1] = out.tags[i + 1], out.tags[i]
        return out

    def _past_present(self, label: str) -> GeneratedSentence | None:
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        return self._done(b.sentence(self._generic_template(), label, units=self._units()), label)

    def _subj_number(self, label: str) -> GeneratedSentence | None:
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        root = b.sentence(
            self._generic_template(), self._tense(), subj_tag=label, units=self._units()
        )
        return self._done(root, label)

    def _obj_number(self, label: str) -> GeneratedSentence | None:
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        root = b.sentence(
            self._generic_template(), self._tense(), obj_tag=label, units=self._units()
        )
        return self._done(root, label)

    def _odd_man_out(self, label: str) -> GeneratedSentence | None:
        rng = self.rng
        b = _Builder(rng, NOUNS, ADJECTIVES)
        root = b.sentence(self._generic_template(), self._tense(), units=self._units())
        if label == "C" and not self._replace(b):
            return None
        return self._done(root, label)

    def _replace(self, b: _Builder) -> bool:
        """Swap one noun or verb for another of the same form that breaks a selection rule."""
        rng = self.rng
        options: list[tuple[Node, str]] = []
        for s in b.noun_slots:
            if s.allowed is not None:
                options += [
                    (s.node, n.sg if s.tag == "NN" else n.pl)
                    for n in NOUNS
                    if n.cls not in s.allowed
                ]
        for v in b.verb_slots:
            options += [
                (v.node, getattr(w, v.form))
                for w in VERBS
                if w is not v.verb and (v.subj_cls not in w.subj or v.obj_cls not in w.obj)
            ]
        if not options:
            return False
        node, word = rng.choice(options)
        node.word = word
        return True

    def _coordination_inversion(self, label: str) -> GeneratedSentence | None:
        b = _Builder(self.rng, NOUNS, ADJECTIVES)
        template = self.rng.choice(("S_CC_S_.", "S_,_CC_S_."))
        root = b.sentence(template, self._tense(), units=self._units())
        if label == "I":
            kids = root.children
            kids[0], kids[-2] = kids[-2], kids[0]  # [S1, (,), CC, S2, .] -> [S2, (,), CC, S1, .]
        return self._done(root, label)


TASK_LABELS: dict[str, tuple[str, ...]] = {
    "sentence_length": tuple(str(k) for k in range(len(LENGTH_BINS))),
    "word_content": tuple(WC_TARGETS),
    "tree_depth": tuple(str(d) for d in DEPTHS),
    "top_constituents": TOP_CONSTITUENTS,
    "bigram_shift": ("O", "I"),
    "past_present": ("PAST", "PRES"),
    "subj_number": ("NN", "NNS"),
    "obj_number": ("NN", "NNS"),
    "odd_man_out": ("O", "C"),
    "coordination_inversion": ("O", "I"),
}
"""Task (file stem) -> its label set, in a fixed order."""
