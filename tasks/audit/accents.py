"""Spanish accent confusions a dictionary cannot catch, decided by the words around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.audit.punctuation import CLOSING, OPENING, Issue
from tasks.audit.spelling import Lexicon


def _words(text: str) -> tuple[str, ...]:
    """The words of a space-separated list."""
    return tuple(text.split())


_CLAUSE_END = ".,;:!?…"
_SENTENCE_END = ".;:!?…"

_PARTICIPLE_ENDINGS = ("ado", "ido")
_GERUND_ENDINGS = ("ando", "iendo", "yendo")
# Words after which "esta" can only be the verb: adverbs and adjectives a demonstrative never
# precedes without a noun.
_AFTER_ESTA = frozenset(
    _words(
        "en bien mal aquí allí ahí allá acá disponible listo vacío activo lleno fuera "
        "dentro encima debajo detrás delante incluido instalado"
    )
)
_IRREGULAR_PARTICIPLES = frozenset(
    _words(
        "abierto cubierto descrito descubierto dicho escrito frito hecho impreso muerto "
        "provisto puesto resuelto roto satisfecho visto vuelto compuesto dispuesto "
        "expuesto impuesto propuesto supuesto inscrito prescrito suscrito devuelto "
        "envuelto revuelto"
    )
)
_MIN_PARTICIPLE = 4
_SECOND_PERSON = frozenset(
    _words(
        "eres tienes puedes sabes quieres debes estás vas haces dices crees necesitas has "
        "mismo misma"
    )
)
_PREPOSITIONS = frozenset(
    _words("a ante con contra de desde en entre hacia hasta para por sin sobre")
)
_BEFORE_PRONOUN = _PREPOSITIONS | {"que", "y", "o", "como"}
_INTERROGATIVES = {
    "que": "qué",
    "como": "cómo",
    "cuando": "cuándo",
    "donde": "dónde",
    "quien": "quién",
    "quienes": "quiénes",
    "cual": "cuál",
    "cuales": "cuáles",
    "cuanto": "cuánto",
    "cuanta": "cuánta",
    "cuantos": "cuántos",
    "cuantas": "cuántas",
}


@dataclass(frozen=True)
class _Context:
    words: Sequence[str]
    lexicon: Lexicon

    def bare(self, index: int) -> str:
        """The word at `index` without surrounding punctuation, lower case ('' outside)."""
        if not 0 <= index < len(self.words):
            return ""
        return self.words[index].strip(OPENING + CLOSING + _CLAUSE_END + "…").lower()

    def ends_clause(self, index: int) -> bool:
        """Whether punctuation closes a clause right after the word at `index`."""
        token = self.words[index].rstrip(CLOSING)
        return token[-1:] in _CLAUSE_END if token else False

    def ends_sentence(self, index: int) -> bool:
        """Whether the word at `index` ends with . ; : ! ? or …."""
        token = self.words[index].rstrip(CLOSING)
        return token[-1:] in _SENTENCE_END if token else False

    def opens_question(self, index: int) -> bool:
        """Whether the word at `index` starts with an opening question mark."""
        return self.words[index].lstrip("\"'([{«“\u2018¡").startswith("¿")

    def joined_to_next(self, index: int) -> bool:
        """Whether the word at `index` runs into the next one with no punctuation between."""
        return index + 1 < len(self.words) and not self.ends_clause(index)


def _esta(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "esta" or not ctx.joined_to_next(i) or not ctx.words[i + 1][:1].islower():
        return None
    after = ctx.bare(i + 1)
    # A demonstrative "esta" agrees with a feminine noun, so a masculine participle, a gerund or
    # an adverb after it can only follow the verb.
    if after in _AFTER_ESTA or after in _IRREGULAR_PARTICIPLES or after.endswith(_GERUND_ENDINGS):
        return "está"
    if after.endswith(_PARTICIPLE_ENDINGS) and len(after) > _MIN_PARTICIPLE:
        return "está"
    if after.endswith(("ada", "ida")) and ctx.lexicon.is_verb_form(after):
        return "está"
    return None


def _mas(ctx: _Context, i: int) -> str | None:
    # "mas" without accent is the literary "but", which follows a comma or opens a sentence.
    if ctx.bare(i) != "mas" or i == 0 or ctx.ends_clause(i - 1) or ctx.words[i][:1] in OPENING:
        return None
    return "más"


def _el(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "el" or i == 0 or not ctx.ends_clause(i) or ctx.ends_clause(i - 1):
        return None
    return "él" if ctx.bare(i - 1) in _BEFORE_PRONOUN else None


def _tu(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "tu":
        return None
    if ctx.joined_to_next(i) and ctx.bare(i + 1) in _SECOND_PERSON:
        return "tú"
    if i == 0 or not ctx.ends_clause(i) or ctx.ends_clause(i - 1):
        return None
    return "tú" if ctx.bare(i - 1) in _BEFORE_PRONOUN else None


def _mi(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "mi" or i == 0 or ctx.bare(i - 1) not in _PREPOSITIONS:
        return None
    if ctx.ends_clause(i) or (
        ctx.joined_to_next(i) and ctx.bare(i + 1) in {"me", "mismo", "misma"}
    ):
        return "mí"
    return None


def _si(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "si":
        return None
    if ctx.joined_to_next(i) and ctx.bare(i + 1) in {"mismo", "misma", "mismos", "mismas"}:
        return "sí"
    return "sí" if i > 0 and ctx.ends_sentence(i) else None


def _se(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "se" or i == 0 or ctx.ends_clause(i - 1):
        return None
    before = ctx.bare(i - 1)
    if before == "yo" or (before == "lo" and (ctx.ends_clause(i) or i + 1 == len(ctx.words))):
        return "sé"
    return None


def _aun(ctx: _Context, i: int) -> str | None:
    if ctx.bare(i) != "aun":
        return None
    if ctx.joined_to_next(i) and ctx.bare(i + 1) == "no" and not ctx.bare(i + 2).endswith("ndo"):
        return "aún"
    if i > 0 and not ctx.ends_clause(i - 1) and ctx.bare(i - 1) in {"más", "menos"}:
        return "aún"
    return None


def _interrogative(ctx: _Context, i: int) -> str | None:
    word = ctx.bare(i)
    if word not in _INTERROGATIVES:
        return None
    if ctx.opens_question(i) or (i > 0 and ctx.opens_question(i - 1) and ctx.bare(i - 1) == "por"):
        return _INTERROGATIVES[word]
    return None


_RULES: tuple[tuple[Callable[[_Context, int], str | None], str, str], ...] = (
    (_esta, "«está» (verbo) lleva tilde ante participio, gerundio o «en»", "'está' (verb)"),
    (_mas, "«más» (cantidad) lleva tilde; «mas» sin tilde significa «pero»", "'más' (more)"),
    (_el, "«él» (pronombre) lleva tilde; «el» es el artículo", "'él' (he/him)"),
    (_tu, "«tú» (pronombre) lleva tilde; «tu» es el posesivo", "'tú' (you)"),
    (_mi, "«mí» (pronombre) lleva tilde tras preposición", "'mí' (me) after a preposition"),
    (_si, "«sí» (afirmación o pronombre) lleva tilde", "'sí' (yes / itself)"),
    (_se, "«sé» (verbo saber) lleva tilde", "'sé' (I know)"),
    (_aun, "«aún» (todavía) lleva tilde", "'aún' (still)"),
    (_interrogative, "los interrogativos llevan tilde", "interrogative words take an accent"),
)


def accent_issues(words: Sequence[str], lexicon: Lexicon) -> list[Issue]:
    """Return the Spanish words of a paragraph whose context calls for an accent."""
    ctx = _Context(words, lexicon)
    issues = []
    for index, token in enumerate(words):
        if token.isupper():
            continue  # an acronym or a heading in capitals ("MAS", "ESTA")
        for rule, reason_es, reason_en in _RULES:
            expected = rule(ctx, index)
            if expected is None:
                continue
            actual = token.strip(OPENING + CLOSING + _CLAUSE_END)
            expected = expected.capitalize() if actual[:1].isupper() else expected
            issues.append(
                Issue(
                    "grammar.accent",
                    index,
                    index,
                    f"«{actual}» debería ser «{expected}»: {reason_es}",
                    f"'{actual}' should be '{expected}': needs an accent here, {reason_en}",
                    actual=actual,
                    expected=expected,
                    suggestion=expected,
                )
            )
            break
    return issues
