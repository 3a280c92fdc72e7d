"""Re-derive every SentEval label of a VALUE-mini sentence from its words alone.

Independent of the generator's code paths: a recursive-descent parser over the lexicon's
word classes rebuilds the tree (the grammar is unambiguous because modifiers attach to the
nearest noun and the word classes are disjoint), and each label is read off that parse:

* SentLen: the bin of the token count; WC: the one target word present.
* TreeDepth, TopConst: the parse's depth and the labels below its root.
* Tense, SubjNum, ObjNum: the main clause's verb form and head-noun forms.
* BShift: ``I`` iff the words do not parse (two adjacent words of different classes swapped
  always break the grammar).
* SOMO: ``C`` iff some clause breaks a verb's subject/object selection (the lexicon classes).
* CoordInv: ``I`` iff the clause before the conjunction holds an order marker (``then``,
  ``again``, ...), which originals only put in the second clause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlprobe.synthetic.senteval_lexicon import (
    ADJECTIVES,
    CONJUNCTIONS,
    DET_NUMBER,
    INTERJECTIONS,
    LEAD_ADVERBS,
    MID_ADVERBS,
    NOUN_BY_WORD,
    ORDER_MARKERS,
    PREPOSITIONS,
    RELATIVE,
    SUBORDINATORS,
    TOP_CONSTITUENTS,
    TRAIL_ADVERBS,
    VERB_BY_WORD,
    WC_TARGETS,
    Noun,
    Verb,
)

_BINS = ((5, 8), (9, 12), (13, 16), (17, 20), (21, 25), (26, 28))


class ParseError(ValueError):
    """The words are not a sentence of the grammar."""


@dataclass
class PNode:
    label: str
    children: list[PNode] = field(default_factory=list)
    word: str = ""

    def depth(self) -> int:
        return 2 if self.word else 1 + max(c.depth() for c in self.children)


@dataclass(frozen=True)
class ClauseInfo:
    verb: Verb
    verb_tag: str  # VBD / VBZ / VBP / VB (imperative)
    subject: tuple[Noun, str] | None  # (noun, NN/NNS); None for an imperative
    object: tuple[Noun, str]


@dataclass
class Parse:
    tree: PNode
    main: ClauseInfo | None  # None for an imperative
    clauses: list[ClauseInfo]  # every clause, relative clauses included
    before_conjunction: list[str] | None  # words of the first conjunct of a coordination


class _Parser:
    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.i = 0
        self.clauses: list[ClauseInfo] = []

    def peek(self) -> str:
        return self.words[self.i] if self.i < len(self.words) else ""

    def eat(self, allowed: object, what: str) -> str:
        w = self.peek()
        if not w or w not in allowed:  # type: ignore[operator]
            raise ParseError(f"word {self.i + 1} ({w or 'end'}): expected {what}")
        self.i += 1
        return w

    def leaf(self, label: str, allowed: object, what: str) -> PNode:
        return PNode(label, word=self.eat(allowed, what))

    def np(self) -> tuple[PNode, tuple[Noun, str]]:
        det = self.eat(DET_NUMBER, "a determiner")
        children = [PNode("DT", word=det)]
        while self.peek() in ADJECTIVES:
            children.append(self.leaf("JJ", ADJECTIVES, "an adjective"))
        word = self.eat(NOUN_BY_WORD, "a noun")
        noun, tag = NOUN_BY_WORD[word]
        if tag not in DET_NUMBER[det]:
            raise ParseError(f"'{det} {word}': determiner and noun disagree in number")
        following = children[1].word if len(children) > 1 else word
        if det in ("a", "an") and (det == "an") != (following[0] in "aeiou"):
            raise ParseError(f"'{det} {following}': wrong article")
        children.append(PNode(tag, word=word))
        if self.peek() in PREPOSITIONS:
            prep = self.leaf("IN", PREPOSITIONS, "a preposition")
            children.append(PNode("PP", [prep, self.np()[0]]))
        elif self.peek() == RELATIVE:
            wdt = PNode("WHNP", [self.leaf("WDT", {RELATIVE}, "'that'")])
            vnode, verb, vtag = self.verb()
            self.agree(vtag, tag)
            obj, obj_head = self.np()
            self.clauses.append(ClauseInfo(verb, vtag, (noun, tag), obj_head))
            children.append(PNode("SBAR", [wdt, PNode("S", [PNode("VP", [vnode, obj])])]))
        return PNode("NP", children), (noun, tag)

    def verb(self) -> tuple[PNode, Verb, str]:
        word = self.eat(VERB_BY_WORD, "a verb")
        verb, tag = VERB_BY_WORD[word]
        return PNode(tag, word=word), verb, tag

    @staticmethod
    def agree(vtag: str, subj_tag: str) -> None:
        if (vtag, subj_tag) in (("VBZ", "NNS"), ("VBP", "NN")):
            raise ParseError("subject and verb disagree in number")

    def clause(self) -> tuple[list[PNode], ClauseInfo]:
        """``[ADVP [,]] NP [ADVP] VP`` with ``VP -> V NP [ADVP]``."""
        out: list[PNode] = []
        if self.peek() in LEAD_ADVERBS:
            out.append(PNode("ADVP", [self.leaf("RB", LEAD_ADVERBS, "an adverb")]))
            if self.peek() == ",":
                out.append(self.leaf(",", {","}, "','"))
        subj, subj_head = self.np()
        out.append(subj)
        if self.peek() in MID_ADVERBS:
            out.append(PNode("ADVP", [self.leaf("RB", MID_ADVERBS, "an adverb")]))
        vnode, verb, vtag = self.verb()
        self.agree(vtag, subj_head[1])
        obj, obj_head = self.np()
        vp = [vnode, obj]
        if self.peek() in TRAIL_ADVERBS:
            vp.append(PNode("ADVP", [self.leaf("RB", TRAIL_ADVERBS, "an adverb")]))
        out.append(PNode("VP", vp))
        info = ClauseInfo(verb, vtag, subj_head, obj_head)
        self.clauses.append(info)
        return out, info

    def sentence(self) -> Parse:
        kids: list[PNode] = []
        w = self.peek()
        if w in INTERJECTIONS:
            kids += [
                PNode("INTJ", [self.leaf("UH", INTERJECTIONS, "")]),
                self.leaf(",", {","}, "','"),
            ]
        elif w in CONJUNCTIONS:
            kids.append(self.leaf("CC", CONJUNCTIONS, ""))
        elif w in SUBORDINATORS:
            sub = self.leaf("IN", SUBORDINATORS, "")
            inner, _ = self.clause()
            kids += [PNode("SBAR", [sub, PNode("S", inner)]), self.leaf(",", {","}, "','")]
        elif w in PREPOSITIONS:
            prep = self.leaf("IN", PREPOSITIONS, "")
            kids.append(PNode("PP", [prep, self.np()[0]]))
            if self.peek() == ",":
                kids.append(self.leaf(",", {","}, "','"))
        main: ClauseInfo | None = None
        before: list[str] | None = None
        if not kids and w in VERB_BY_WORD and VERB_BY_WORD[w][1] == "VBP":  # imperative
            verb = VERB_BY_WORD[self.eat(VERB_BY_WORD, "a verb")][0]
            obj, obj_head = self.np()
            self.clauses.append(ClauseInfo(verb, "VB", None, obj_head))
            kids.append(PNode("VP", [PNode("VB", word=verb.base), obj]))
        else:
            start = self.i
            first, main = self.clause()
            if self.peek() in (",", *CONJUNCTIONS):
                before = self.words[start : self.i]
                kids.append(PNode("S", first))
                if self.peek() == ",":
                    kids.append(self.leaf(",", {","}, "','"))
                kids.append(self.leaf("CC", CONJUNCTIONS, "a conjunction"))
                kids.append(PNode("S", self.clause()[0]))
            else:
                kids += first
        kids.append(self.leaf(".", {"."}, "'.'"))
        if self.i != len(self.words):
            raise ParseError(f"word {self.i + 1}: words after the final '.'")
        return Parse(PNode("S", kids), main, self.clauses, before)


def parse(sentence: str) -> Parse:
    """Parse a whitespace-tokenised sentence of the grammar; raises :class:`ParseError`."""
    return _Parser(sentence.split()).sentence()


def _violates(c: ClauseInfo) -> bool:
    subj_cls = c.subject[0].cls if c.subject is not None else "H"
    return subj_cls not in c.verb.subj or c.object[0].cls not in c.verb.obj


def derive_label(task: str, sentence: str) -> str:
    """The label of ``sentence`` in ``task`` (a file stem), from the words alone."""
    words = sentence.split()
    if task == "sentence_length":
        return next(str(k) for k, (lo, hi) in enumerate(_BINS) if lo <= len(words) <= hi)
    if task == "word_content":
        found = [w for w in words if w in WC_TARGETS]
        if len(found) != 1:
            raise ParseError(f"expected exactly one target word, found {found}")
        return found[0]
    if task == "bigram_shift":
        try:
            parse(sentence)
        except ParseError:
            return "I"
        return "O"
    p = parse(sentence)
    if task == "tree_depth":
        return str(p.tree.depth())
    if task == "top_constituents":
        seq = "_".join(c.label for c in p.tree.children)
        return seq if seq in TOP_CONSTITUENTS else "OTHER"
    if task == "odd_man_out":
        return "C" if any(_violates(c) for c in p.clauses) else "O"
    if task == "coordination_inversion":
        if p.before_conjunction is None:
            raise ParseError("not a coordination of two clauses")
        return "I" if ORDER_MARKERS & set(p.before_conjunction) else "O"
    if p.main is None:
        raise ParseError("an imperative has no main-clause subject or tense")
    if task == "past_present":
        return "PAST" if p.main.verb_tag == "VBD" else "PRES"
    if task == "subj_number":
        assert p.main.subject is not None
        return p.main.subject[1]
    if task == "obj_number":
        return p.main.object[1]
    raise ValueError(f"unknown SentEval task {task!r}")
