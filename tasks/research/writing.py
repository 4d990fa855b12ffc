"""Writers of the report: extractive (no LLM) or an LLM given numbered passages.

Both produce a `Draft` whose `[n]` markers number the passages they were given (1-based);
`tasks.research.citations.check_citations` then makes sure every marker resolves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from core.llm import ChatMessage
from core.research_models import Passage, ReportLanguage, ReportSection
from core.sparse import fold, terms
from tasks.research.citations import Draft

SUMMARY_PASSAGES = 3
SENTENCES_PER_PASSAGE = 2
MAX_SENTENCE_CHARS = 400
#: Characters of each passage an LLM is shown.
MAX_PASSAGE_CHARS = 1500
#: Below this many words a "sentence" is a table cell or a caption: it counts half.
SHORT_SENTENCE_WORDS = 4
#: Terms of the question itself a passage must hold to be quoted.
MIN_QUESTION_TERMS = 2
#: Share of a sentence's score the next sentence inherits.
CARRY_OVER = 0.5

PHRASES: dict[ReportLanguage, dict[str, str]] = {
    "en": {
        "nothing": "I found nothing relevant in the knowledge base to answer “{query}”. The "
        "documents available to you do not seem to cover this; try other words, or add "
        "documents that do.",
        "intro": "From {passages} passage(s) of {documents} document(s) in the knowledge base:",
        "details": "Details",
        "sources": "Sources",
        "sub_questions": "Sub-questions searched",
        "page": "p.",
        "language_name": "English",
    },
    "es": {
        "nothing": "No he encontrado nada relevante en la base de conocimiento para responder a "
        "«{query}». Los documentos a los que tiene acceso no parecen tratar este tema; pruebe "
        "con otras palabras o añada documentos que lo traten.",
        "intro": "Según {passages} pasaje(s) de {documents} documento(s) de la base de "
        "conocimiento:",
        "details": "Detalles",
        "sources": "Fuentes",
        "sub_questions": "Subpreguntas buscadas",
        "page": "pág.",
        "language_name": "español",
    },
}

_BLOCK = re.compile(r"\n+")
_SENTENCE = re.compile(r"(?<=[.!?…])\s+(?=[\"“«(¿¡]?[A-ZÁÉÍÓÚÑ0-9])")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class DraftParseError(ValueError):
    """An LLM's reply held no usable report."""


def nothing_found_draft(query: str, language: ReportLanguage) -> Draft:
    """The plain statement that the knowledge base has nothing relevant, and nothing else."""
    return Draft(summary=PHRASES[language]["nothing"].format(query=" ".join(query.split())))


def sentences(text: str) -> list[str]:
    """The sentences of a passage: lines (paragraphs, cells, commands) split at sentence ends."""
    found: list[str] = []
    for block in _BLOCK.split(text):
        block = " ".join(block.split())
        for sentence in _SENTENCE.split(block):
            sentence = sentence.strip()
            if len(sentence) < 3:
                continue
            if len(sentence) > MAX_SENTENCE_CHARS:
                sentence = sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
            found.append(sentence)
    return found


def sentence_score(sentence: str, wanted: dict[str, float], language: ReportLanguage) -> float:
    """How much of the question a sentence speaks to: weights of the distinct terms it holds."""
    own = set(terms(sentence, language))
    score = sum(weight for term, weight in wanted.items() if term in own)
    if len(sentence.split()) < SHORT_SENTENCE_WORDS:
        score /= 2
    return score


def _wanted_terms(
    query: str, sub_questions: Sequence[str], passage: Passage
) -> tuple[dict[str, float], ReportLanguage]:
    """Terms to look for in a passage (the question's weigh most), stemmed in its language."""
    language: ReportLanguage = "es" if passage.language == "es" else "en"
    wanted: dict[str, float] = {}
    for index in passage.sub_questions:
        if 0 < index < len(sub_questions):
            for term in terms(sub_questions[index], language):
                wanted[term] = 0.5
    for term in terms(query, language):
        wanted[term] = 1.0
    return wanted, language


def best_sentences(
    query: str, sub_questions: Sequence[str], passage: Passage, limit: int
) -> list[str]:
    """The passage's sentences that speak to the question, best first."""
    wanted, language = _wanted_terms(query, sub_questions, passage)
    own = {term for term, weight in wanted.items() if weight == 1.0}
    if len(own & set(terms(passage.text, language))) < min(MIN_QUESTION_TERMS, len(own)):
        # One word shared with the question ("reboot") is a coincidence, not an answer.
        return []
    scored = []
    previous = 0.0
    for i, sentence in enumerate(sentences(passage.text)):
        own_score = sentence_score(sentence, wanted, language)
        # A sentence after a telling one often carries its answer ("... as follows:" + items).
        score = own_score + CARRY_OVER * previous if own_score > 0 else 0.0
        previous = own_score
        if i == 0 and sentence[0].islower():
            # A chunk that starts mid-sentence (the overlap with the previous chunk).
            score /= 2
        scored.append((score, -i, sentence))
    top = sorted((item for item in scored if item[0] > 0), reverse=True)[:limit]
    return [sentence for _, _, sentence in top]


def write_extractive(
    query: str,
    language: ReportLanguage,
    sub_questions: Sequence[str],
    passages: Sequence[Passage],
) -> Draft:
    """A report made of the passages' best sentences, each followed by its passage number.

    The summary quotes the best sentence of the top passages; the sections give more of each
    passage, under the sub-question that found it. Passages that share no term with the
    question are left out rather than padding the report.
    """
    picked: dict[int, list[str]] = {}
    seen: set[str] = set()
    for number, passage in enumerate(passages, start=1):
        # Overlapping chunks repeat sentences: each is quoted once, from the better passage.
        found = [
            s
            for s in best_sentences(query, sub_questions, passage, SENTENCES_PER_PASSAGE + 3)
            if fold(s) not in seen
        ][: SENTENCES_PER_PASSAGE + 1]
        if found:
            picked[number] = found
            seen.update(fold(s) for s in found)
    if not picked:
        return nothing_found_draft(query, language)
    lead = list(picked)[:SUMMARY_PASSAGES]
    intro = PHRASES[language]["intro"].format(
        passages=len(picked), documents=len({passages[n - 1].doc_id for n in picked})
    )
    summary = " ".join([intro, *(f"{picked[n][0]} [{n}]" for n in lead)])
    in_summary = {(n, picked[n][0]) for n in lead}
    groups: dict[int, list[str]] = {}
    for number, found in picked.items():
        rest = [s for s in found if (number, s) not in in_summary][:SENTENCES_PER_PASSAGE]
        if rest:
            group = min(passages[number - 1].sub_questions, default=0)
            groups.setdefault(group, []).append(f"- {' '.join(rest)} [{number}]")
    sections = [
        ReportSection(
            heading=sub_questions[group]
            if len(groups) > 1 and group < len(sub_questions)
            else PHRASES[language]["details"],
            text="\n".join(lines),
        )
        for group, lines in sorted(groups.items())
    ]
    return Draft(summary=summary, sections=sections)


_WRITER_SYSTEM = (
    "You write research reports from numbered passages of a private knowledge base. Use only "
    "facts stated in the passages. After every sentence that states a fact, cite the passage "
    "it comes from as [n], with n the passage number; cite only numbers from the list. Write "
    "in {language}, even when passages are in another language. If the passages do not answer "
    "the question, say so plainly instead of guessing. Reply with JSON only, of this form: "
    '{{"summary": "two to four sentences that answer the question", "sections": '
    '[{{"heading": "...", "text": "..."}}]}}'
)


def writer_messages(
    query: str,
    language: ReportLanguage,
    sub_questions: Sequence[str],
    passages: Sequence[Passage],
) -> list[ChatMessage]:
    """The chat messages that ask an LLM for a cited report on numbered passages."""
    numbered = []
    for number, passage in enumerate(passages, start=1):
        where = passage.document
        if passage.pages:
            where += f", {PHRASES[language]['page']} {passage.pages[0]}"
        text = " ".join(passage.text.split())[:MAX_PASSAGE_CHARS]
        numbered.append(f"[{number}] ({where})\n{text}")
    user = "\n\n".join(
        [
            f"Question: {query}",
            "Sub-questions:\n" + "\n".join(f"- {q}" for q in sub_questions),
            "Passages:\n\n" + "\n\n".join(numbered),
        ]
    )
    system = _WRITER_SYSTEM.format(language=PHRASES[language]["language_name"])
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


def parse_draft(reply: str) -> Draft:
    """The draft in an LLM reply: the JSON asked for, or else markdown with `##` sections."""
    text = _FENCE.sub("", reply.strip()).strip()
    if not text:
        raise DraftParseError("empty reply")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _markdown_draft(text)
    if not isinstance(data, dict) or not isinstance(data.get("summary"), str):
        raise DraftParseError("reply JSON has no summary string")
    sections = []
    for item in data.get("sections") or []:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DraftParseError("a section is not {heading, text}")
        heading = item.get("heading")
        sections.append(
            ReportSection(heading=heading if isinstance(heading, str) else "", text=item["text"])
        )
    return Draft(summary=data["summary"].strip(), sections=sections)


def _markdown_draft(text: str) -> Draft:
    """A draft from markdown: text before the first `##` heading is the summary."""
    parts = re.split(r"^#{1,6}\s+(.+)$", text, flags=re.M)
    summary = parts[0].strip()
    sections = [
        ReportSection(heading=heading.strip(), text=body.strip())
        for heading, body in zip(parts[1::2], parts[2::2], strict=True)
        if body.strip()
    ]
    if not summary and sections:
        summary, sections = sections[0].text, sections[1:]
    return Draft(summary=summary, sections=sections)
