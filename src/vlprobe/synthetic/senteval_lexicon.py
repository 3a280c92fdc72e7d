"""The word lists of the VALUE-mini SentEval grammar: data only, shared by generator and checker.

Every word class is disjoint from every other (no word is both a noun and a verb, ``that`` is
only a relative pronoun, ``after`` only a subordinator, ...), so a sentence can be parsed back
from its words alone. Nouns carry a semantic class (H human, A animal, O object, P place) and
verbs the classes they accept as subject and object: originals always respect them, the
odd-man-out (SOMO) replacement always breaks one. All words are in the bert-base-uncased
vocabulary. Nouns never start with a vowel, so replacing one never changes ``a`` / ``an``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    cls: str  # H human, A animal, O object, P place


@dataclass(frozen=True)
class Verb:
    base: str  # also the present tense with a plural subject, and the imperative
    s3: str  # present, singular subject
    past: str
    subj: frozenset[str]
    obj: frozenset[str]


def _nouns(cls: str, pairs: str) -> tuple[Noun, ...]:
    return tuple(Noun(*p.split("/"), cls) for p in pairs.split())


NOUNS: tuple[Noun, ...] = (
    *_nouns(
        "H",
        "man/men woman/women child/children boy/boys girl/girls teacher/teachers "
        "doctor/doctors farmer/farmers student/students friend/friends king/kings "
        "soldier/soldiers baby/babies driver/drivers nurse/nurses singer/singers",
    ),
    *_nouns(
        "A",
        "dog/dogs cat/cats horse/horses bird/birds cow/cows rabbit/rabbits wolf/wolves "
        "fox/foxes bear/bears duck/ducks pig/pigs tiger/tigers",
    ),
    *_nouns(
        "O",
        "ball/balls book/books box/boxes cup/cups key/keys bag/bags letter/letters "
        "picture/pictures bottle/bottles hat/hats coat/coats lamp/lamps chair/chairs "
        "table/tables bed/beds phone/phones knife/knives map/maps gift/gifts toy/toys",
    ),
    *_nouns(
        "P",
        "house/houses garden/gardens city/cities road/roads hill/hills village/villages "
        "church/churches school/schools farm/farms market/markets bridge/bridges "
        "castle/castles station/stations room/rooms kitchen/kitchens forest/forests",
    ),
)

_ANY = frozenset("HAOP")
_HA = frozenset("HA")
_H = frozenset("H")


def _verb(forms: str, subj: frozenset[str], obj: str | frozenset[str]) -> Verb:
    base, s3, past = forms.split("/")
    return Verb(base, s3, past, subj, frozenset(obj))


VERBS: tuple[Verb, ...] = (
    _verb("see/sees/saw", _HA, _ANY),
    _verb("find/finds/found", _HA, "HAO"),
    _verb("chase/chases/chased", _HA, "HA"),
    _verb("watch/watches/watched", _HA, "HA"),
    _verb("carry/carries/carried", _HA, "O"),
    _verb("hold/holds/held", _H, "OA"),
    _verb("open/opens/opened", _H, "O"),
    _verb("visit/visits/visited", _H, "PH"),
    _verb("build/builds/built", _H, "OP"),
    _verb("keep/keeps/kept", _H, "OA"),
    _verb("help/helps/helped", _H, "HA"),
    _verb("feed/feeds/fed", _H, "HA"),
    _verb("bring/brings/brought", _HA, "O"),
    _verb("buy/buys/bought", _H, "OAP"),
    _verb("love/loves/loved", _HA, _ANY),
    _verb("paint/paints/painted", _H, _ANY),
    _verb("follow/follows/followed", _HA, "HA"),
    _verb("sell/sells/sold", _H, "OAP"),
    _verb("push/pushes/pushed", _HA, "O"),
    _verb("drop/drops/dropped", _HA, "O"),
    _verb("meet/meets/met", _H, "H"),
    _verb("hear/hears/heard", _HA, "HA"),
)

_ADJECTIVE_TEXT = (
    "big small old young red green blue white black happy tall little dark bright quiet "
    "angry brown yellow cold warm new strange heavy empty poor rich famous lazy"
)
ADJECTIVES: tuple[str, ...] = tuple(_ADJECTIVE_TEXT.split())

DET_SG: tuple[str, ...] = ("a", "the", "this", "every", "one")
DET_PL: tuple[str, ...] = ("the", "these", "some", "many", "two", "three", "those")
PREPOSITIONS: tuple[str, ...] = ("in", "on", "near", "under", "behind", "with", "from", "by")
SUBORDINATORS: tuple[str, ...] = ("when", "because", "although", "after", "while", "since")
CONJUNCTIONS: tuple[str, ...] = ("and", "but")
LEAD_ADVERBS: tuple[str, ...] = ("then", "later", "soon", "suddenly", "finally", "now")
MID_ADVERBS: tuple[str, ...] = ("often", "never", "always", "rarely", "usually")
TRAIL_ADVERBS: tuple[str, ...] = ("again", "too", "today")
INTERJECTIONS: tuple[str, ...] = ("oh", "yes", "well")
RELATIVE = "that"

ORDER_MARKERS: frozenset[str] = frozenset({"then", "later", "soon", "finally", "again", "too"})
"""Words that mark a clause as the *second* of two coordinated clauses (CoordInv): originals
carry one in the right clause only, so an inverted sentence has one before the conjunction."""

_TARGET_TEXT = (
    # 16 adjectives and 24 singular nouns (6 per class); their lexemes appear nowhere else
    "red green blue white black happy tall dark bright quiet angry brown cold warm strange heavy "
    "man woman teacher doctor king nurse "
    "dog cat horse bird rabbit fox "
    "ball book box letter lamp chair "
    "house garden bridge castle church village"
)
WC_TARGETS: tuple[str, ...] = tuple(_TARGET_TEXT.split())
"""Word Content targets: each WC sentence holds exactly one, exactly once."""

NOUN_BY_WORD: dict[str, tuple[Noun, str]] = {
    **{n.sg: (n, "NN") for n in NOUNS},
    **{n.pl: (n, "NNS") for n in NOUNS},
}
VERB_BY_WORD: dict[str, tuple[Verb, str]] = {
    **{v.base: (v, "VBP") for v in VERBS},
    **{v.s3: (v, "VBZ") for v in VERBS},
    **{v.past: (v, "VBD") for v in VERBS},
}
DET_NUMBER: dict[str, frozenset[str]] = {
    **{d: frozenset({"NN"}) for d in DET_SG},
    "an": frozenset({"NN"}),
    **{d: frozenset({"NNS"}) for d in DET_PL},
    "the": frozenset({"NN", "NNS"}),
}

TOP_CONSTITUENTS: tuple[str, ...] = (
    "NP_VP_.",
    "NP_ADVP_VP_.",
    "ADVP_NP_VP_.",
    "ADVP_,_NP_VP_.",
    "PP_NP_VP_.",
    "PP_,_NP_VP_.",
    "SBAR_,_NP_VP_.",
    "S_CC_S_.",
    "S_,_CC_S_.",
    "CC_NP_VP_.",
    "VP_.",
    "OTHER",
)
"""TopConst classes: the sequence of constituents below the root S, ``OTHER`` for the rest."""


def all_words() -> set[str]:
    """Every word the grammar can emit (for the vocabulary check)."""
    words = set(NOUN_BY_WORD) | set(VERB_BY_WORD) | set(ADJECTIVES) | set(DET_NUMBER)
    words |= set(PREPOSITIONS) | set(SUBORDINATORS) | set(CONJUNCTIONS) | set(INTERJECTIONS)
    words |= set(LEAD_ADVERBS) | set(MID_ADVERBS) | set(TRAIL_ADVERBS) | {RELATIVE, ",", "."}
    return words
