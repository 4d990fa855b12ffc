"""BM25-style sparse vectors for the keyword half of hybrid search.

Documents get BM25 term-frequency saturation (k1, b and a fixed average length); queries get
weight 1 per unique term. The inverse document frequency is not computed here: both engines
apply it at search time through the sparse vector's IDF modifier, scoped to the searching
tenant's points, so the weights stay right as the collection grows and shrinks.

Text is lowercased, accent-folded ("configuración" and "configuracion" are one term), split on
non-alphanumerics, stripped of Spanish and English stopwords and Snowball-stemmed: documents
with their own language's stemmer, queries with the query's. A query of unknown language
carries its raw, English-stemmed and Spanish-stemmed terms so it still meets stemmed documents.
Terms map to indices through CRC-32, which is stable across processes and machines.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

import snowballstemmer

from core.models import Language, SparseVector

K1 = 1.2
B = 0.75
#: Content terms in a typical chunk (about 200 model tokens, stopwords removed).
AVERAGE_DOCUMENT_TERMS = 90.0
MAX_TERM_CHARS = 40

_SNOWBALL_NAMES: dict[str, str] = {"en": "english", "es": "spanish"}
_WORD = re.compile(r"[^\W_]+")

_STOPWORDS_EN = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves isn aren wasn weren
hasn haven hadn doesn don didn won wouldn shan shouldn cannot couldn mustn let ll
re ve also may might must shall
"""

_STOPWORDS_ES = """
a al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante
e el ella ellas ellos en entre era erais eramos eran eras eres es esa esas ese eso esos esta
estaba estabais estabamos estaban estabas estad estada estadas estado estados estais estamos
estan estando estar estara estaran estaras estare estareis estaremos estaria estariais
estariamos estarian estarias estas este esteis estemos esten estes esto estos estoy estuve
estuviera estuvieron estuvimos estuviste estuvo fue fuera fueron fui fuimos fuiste ha habeis
haber habia habiais habiamos habian habias han has hasta hay haya hayan hayas he hemos hube
hubiera hubieron hubo la las le les lo los mas me mi mia mias mio mios mis mucho muchos muy
nada ni no nos nosotras nosotros nuestra nuestras nuestro nuestros o os otra otras otro otros
para pero poco por porque que quien quienes se sea sean ser sera seran seria serian si sido
siendo sin sobre sois somos son soy su sus suya suyas suyo suyos tambien tanto te tendra
tendran tenemos tener tenga tengo tenia tenian tiene tienen ti tu tus tuya tuyas tuyo tuyos
tuve tuvo un una uno unos vosotras vosotros vuestra vuestras vuestro vuestros y ya yo
cada cual cuales todo todos toda todas mismo misma mismos mismas otro tal tan aqui alli
asi bien puede pueden segun tras
"""

STOPWORDS: frozenset[str] = frozenset((_STOPWORDS_EN + _STOPWORDS_ES).split())

_local = threading.local()


def fold(text: str) -> str:
    """Lowercase `text` and strip its accents (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _stemmer(language: str) -> snowballstemmer.stemmer:
    """This thread's Snowball stemmer for `language` (stemmers keep per-call state)."""
    stemmers: dict[str, snowballstemmer.stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    if language not in stemmers:
        stemmers[language] = snowballstemmer.stemmer(_SNOWBALL_NAMES[language])
    return stemmers[language]


@lru_cache(maxsize=65536)
def _stem(word: str, language: str) -> str:
    """The Snowball stem of an accent-folded `word`, or the word itself for "other"."""
    if language not in _SNOWBALL_NAMES:
        return word
    return str(_stemmer(language).stemWord(word))


def words(text: str) -> list[str]:
    """The folded content words of `text`: stopwords, one-letter words and junk removed."""
    return [
        word
        for word in _WORD.findall(fold(text))
        if word not in STOPWORDS
        and len(word) <= MAX_TERM_CHARS
        and (len(word) > 1 or word.isdigit())
    ]


def terms(text: str, language: Language) -> list[str]:
    """The stemmed terms of `text` in `language`, in order, repeats kept."""
    return [_stem(word, language) for word in words(text)]


def term_index(term: str) -> int:
    """The sparse-vector index of `term`: its CRC-32, stable across processes."""
    return zlib.crc32(term.encode("utf-8"))


def _vector(weights: dict[int, float]) -> SparseVector:
    """A sparse vector from index weights, indices sorted for determinism."""
    indices = sorted(weights)
    return SparseVector(indices=indices, values=[weights[index] for index in indices])


def encode_document(text: str, language: Language) -> SparseVector:
    """The BM25 term-frequency vector of a chunk (IDF is applied by the engine at search)."""
    document_terms = terms(text, language)
    length_norm = K1 * (1 - B + B * len(document_terms) / AVERAGE_DOCUMENT_TERMS)
    weights: dict[int, float] = {}
    for term, tf in Counter(document_terms).items():
        index = term_index(term)
        # Two terms sharing a CRC-32 index add up, as they would in one vocabulary slot.
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + length_norm)
    return _vector(weights)


def _query_terms(text: str, language: Language) -> Iterable[str]:
    """The terms a query searches for; unknown-language queries try every stemmer."""
    if language != "other":
        return terms(text, language)
    query_words = words(text)
    return [
        *query_words,
        *(_stem(w, "en") for w in query_words),
        *(_stem(w, "es") for w in query_words),
    ]


def encode_query(text: str, language: Language) -> SparseVector:
    """The query vector of `text`: each unique term with weight 1."""
    return _vector(dict.fromkeys((term_index(term) for term in _query_terms(text, language)), 1.0))
