"""Sub-questions of a research query: from its own structure, or asked of an LLM."""

from __future__ import annotations

import json
import logging
import re

from core.llm import ChatClient, ChatMessage
from core.research_models import ReportLanguage
from core.sparse import STOPWORDS, fold, terms

logger = logging.getLogger(__name__)

MAX_SUB_QUESTION_CHARS = 300
#: Content words a clause needs to stand as a sub-question of its own.
MIN_CLAUSE_WORDS = 2
KEY_TERMS = 5

_SENTENCE_END = re.compile(r"(?<=[?!.;])\s+|\s+(?=[¿¡])")
_CONJUNCTION = re.compile(r"\s*,?\s+(?:and|or|as well as|also|y|e|o|u|así como|además de)\s+", re.I)
_QUESTION_WORDS_TEXT = """
    how what which why when where who whom whose can could should do does is are
    como cual cuales que por cuando donde quien quienes puedo puede debo
"""
_QUESTION_WORDS = frozenset(_QUESTION_WORDS_TEXT.split())
# Spanish "la", "las", "lo", "los" are left out: they are also object pronouns ("las restauro").
_ARTICLES = frozenset(["the", "a", "an", "el", "un", "una", "unos", "unas"])
_TOKEN = re.compile(r"[^\s¿?¡!,;:()\"'«»]+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class PlanParseError(ValueError):
    """An LLM's plan was not the JSON asked for."""


def content_words(text: str) -> list[str]:
    """The words of `text` that carry meaning, as written (stopwords and punctuation dropped)."""
    found = []
    for token in _TOKEN.findall(text):
        word = token.strip(".")
        folded = fold(word)
        if word and folded not in STOPWORDS and (len(folded) > 1 or folded.isdigit()):
            found.append(word)
    return found


def _salience(word: str) -> tuple[int, int]:
    """Technical tokens (paths, options, names with digits) first, then longer words."""
    technical = any(ch.isdigit() or ch in "-_/.=" for ch in word)
    return (0 if technical else 1, -len(word))


def key_terms(query: str, limit: int = KEY_TERMS) -> list[str]:
    """The query's most telling words, in the order they appear in it."""
    words = list(dict.fromkeys(content_words(query)))
    keep = set(sorted(words, key=_salience)[:limit])
    return [word for word in words if word in keep]


def _frame(clause: str) -> tuple[str, str]:
    """The question frame before the first content word ("How do I") and that word."""
    tokens = clause.split()
    for i, token in enumerate(tokens):
        if fold(token.strip("¿?¡!,.")) not in STOPWORDS | _QUESTION_WORDS:
            return " ".join(tokens[:i]), token
    return "", ""


def _continue(first: str, part: str) -> str:
    """A coordinated part made a question of its own with the first part's frame.

    "How do I save X and restore Y" gives "How do I restore Y"; a part that opens with an
    article names a thing, not an action, and also takes the first part's verb: "How do I
    configure X and the Y" gives "How do I configure the Y".
    """
    frame, verb = _frame(first)
    opening = fold(part.split()[0].strip("¿?¡"))
    if opening in _QUESTION_WORDS or not frame:
        return part
    if opening in _ARTICLES:
        return f"{frame} {verb} {part}"
    return f"{frame} {part}"


def split_clauses(query: str) -> list[str]:
    """The question's sentences and coordinated parts, each with at least two content words."""
    clauses: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(query))):
        parts = [p.strip(" ,") for p in _CONJUNCTION.split(sentence) if p.strip(" ,")]
        if len(parts) < 2 or any(len(content_words(p)) < MIN_CLAUSE_WORDS for p in parts):
            clauses.append(sentence)
            continue
        clauses.append(parts[0])
        clauses.extend(_continue(parts[0], part) for part in parts[1:])
    return clauses


def _term_set(text: str, language: ReportLanguage) -> frozenset[str]:
    return frozenset(terms(text, language))


def dedupe_questions(questions: list[str], language: ReportLanguage, limit: int) -> list[str]:
    """Questions with a distinct set of search terms, first ones kept, at most `limit`."""
    kept: list[str] = []
    seen: list[frozenset[str]] = []
    for question in questions:
        text = " ".join(question.split())[:MAX_SUB_QUESTION_CHARS]
        term_set = _term_set(text, language)
        if not term_set or term_set in seen:
            continue
        kept.append(text)
        seen.append(term_set)
        if len(kept) == limit:
            break
    return kept


def plan_extractive(query: str, language: ReportLanguage, depth: int) -> list[str]:
    """The query itself, its clauses, then its key terms as a keyword query: depth + 1 at most."""
    query = " ".join(query.split())
    candidates = [query]
    clauses = split_clauses(query)
    if len(clauses) > 1:
        candidates.extend(clauses)
    keywords = key_terms(query)
    if len(keywords) >= 2:
        candidates.append(" ".join(keywords))
    planned = dedupe_questions(candidates, language, depth + 1)
    return planned or [query]


_PLANNER_SYSTEM = {
    "en": (
        "You plan research over a private knowledge base searched by keywords and meaning. "
        "Break the user's question into at most {n} short, self-contained search questions "
        "in English that together cover it. Reply with JSON only, exactly of this form: "
        '{{"sub_questions": ["...", "..."]}}'
    ),
    "es": (
        "Planificas una investigación sobre una base de conocimiento privada que se busca por "
        "palabras y por significado. Divide la pregunta del usuario en como mucho {n} preguntas "
        "de búsqueda cortas y autónomas, en español, que juntas la cubran. Responde solo con "
        'JSON exactamente de esta forma: {{"sub_questions": ["...", "..."]}}'
    ),
}


def planner_messages(query: str, language: ReportLanguage, depth: int) -> list[ChatMessage]:
    """The chat messages that ask an LLM for sub-questions."""
    return [
        ChatMessage(role="system", content=_PLANNER_SYSTEM[language].format(n=depth)),
        ChatMessage(role="user", content=query),
    ]


def parse_plan(reply: str, depth: int) -> list[str]:
    """The sub-questions of an LLM reply: a JSON object with a list of 1..depth strings."""
    text = _FENCE.sub("", reply.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanParseError(f"plan is not JSON: {exc.msg}") from exc
    items = data.get("sub_questions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise PlanParseError("plan has no sub_questions list")
    if len(items) > depth:
        raise PlanParseError(f"plan has {len(items)} sub-questions, at most {depth} were asked")
    questions = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise PlanParseError("a sub-question is not a non-empty string")
        if len(item) > MAX_SUB_QUESTION_CHARS:
            raise PlanParseError("a sub-question is too long")
        questions.append(" ".join(item.split()))
    return questions


def plan_with_llm(
    query: str, language: ReportLanguage, depth: int, client: ChatClient
) -> tuple[list[str], bool]:
    """Sub-questions from the LLM after the query itself, or the extractive plan when the
    reply cannot be parsed; the flag says whether the LLM's plan was used."""
    reply = client.complete(planner_messages(query, language, depth))
    try:
        asked = parse_plan(reply, depth)
    except PlanParseError as exc:
        logger.warning("LLM plan rejected (%s); planning from the question itself", exc)
        return plan_extractive(query, language, depth), False
    return dedupe_questions([" ".join(query.split()), *asked], language, depth + 1), True
