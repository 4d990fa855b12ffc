"""Structure-aware chunking of parsed documents into pieces bounded in model tokens."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.models import Block, Chunk, ParsedDocument
from core.settings import Settings, get_settings
from core.tokens import TokenCounter, get_token_counter

logger = logging.getLogger(__name__)

# Bump whenever a change here can change the chunks of an unchanged document.
CHUNKER_VERSION = "1"

CONTEXT_SEPARATOR = " > "

# Words that end with a dot without ending a sentence (lowercase, without the dot).
_ABBREVIATION_WORDS = """
    mr mrs ms dr drs prof sr sra srta sres srs jr st mt gen gov rep sen rev hon capt col lt sgt
    vs cf al fig figs vol vols ch chap sec sect pp approx dept inc ltd corp jan feb apr jun jul
    aug sep sept oct nov dec dra lic arq dña ud uds vd vds núm nro art arts pág págs ej caps
    cía avda admón aprox apdo depto dpto tfno edit izq dcha pza prov ibíd cit ene abr dic
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# Typographic quotes and dashes as escapes: they look like ASCII ones in an editor.
_CLOSERS = "\"'\u201d\u2019\u00bb)]"
_OPENERS = "\"'\u201c\u2018\u00ab([\u00bf\u00a1"
_BOUNDARY = re.compile(rf"[.!?\u2026]+[{re.escape(_CLOSERS)}]*\s+|\s*\n\s*")
_SENTENCE_OPENERS = _OPENERS + "-*\u2022\u2013\u2014"
_WORD = re.compile(r"\S+")
# "1." or "IV." alone is a list enumerator, not a sentence.
_ENUMERATOR = re.compile(r"\d{1,3}|[IVXivx]{1,4}")


class ChunkingConfig(BaseModel):
    """Chunk size and overlap, in tokens of the embedding model."""

    model_config = ConfigDict(frozen=True)

    chunk_tokens: int = Field(default=200, ge=16, description="Largest chunk, in model tokens.")
    overlap_tokens: int = Field(
        default=32, ge=0, description="Tokens of trailing text repeated at the next chunk's start."
    )

    @model_validator(mode="after")
    def _overlap_below_half(self) -> ChunkingConfig:
        if self.overlap_tokens > self.chunk_tokens // 2:
            raise ValueError("overlap_tokens must be at most half of chunk_tokens")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkingConfig:
        """The chunking configuration the settings ask for."""
        return cls(chunk_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens)

    def fingerprint(self) -> str:
        """Short stable hash of this configuration and the chunker's code version."""
        payload = json.dumps(
            {"chunker": CHUNKER_VERSION, **self.model_dump()}, sort_keys=True
        ).encode()
        return hashlib.sha256(payload).hexdigest()[:12]


def chunking_config(settings: Settings | None = None) -> ChunkingConfig:
    """The chunking configuration of the given or process-wide settings."""
    return ChunkingConfig.from_settings(settings or get_settings())


@dataclass(frozen=True, slots=True)
class _Piece:
    """A sentence, or part of one, with its span in the document text."""

    start: int
    end: int
    tokens: int
    page: int | None


@dataclass(frozen=True, slots=True)
class _Section:
    """Consecutive paragraphs under one heading path."""

    heading_path: tuple[str, ...]
    blocks: tuple[Block, ...]


class _Chunker:
    """Packs the pieces of one document into chunks within a token budget."""

    def __init__(
        self, doc: ParsedDocument, config: ChunkingConfig, counter: TokenCounter, budget: int
    ) -> None:
        self.text = doc.text
        self.doc_id = doc.doc_id
        self.counter = counter
        self.budget = budget
        self.overlap = config.overlap_tokens
        self.chunks: list[Chunk] = []

    def count(self, start: int, end: int) -> int:
        """Tokens in a span of the document text."""
        return self.counter.count(self.text[start:end])

    def span_tokens(self, pieces: Sequence[_Piece]) -> int:
        """Tokens from the first piece's start to the last one's end.

        With a tokenizer that splits at whitespace this adds up the pieces and the text
        between them, which is exact when every gap begins and ends with whitespace; it
        recounts the whole span otherwise (and for other tokenizers).
        """
        total = sum(piece.tokens for piece in pieces)
        if not self.counter.splits_at_whitespace:
            return self.count(pieces[0].start, pieces[-1].end)
        for before, after in pairwise(pieces):
            gap = self.text[before.end : after.start]
            if not gap or not gap[0].isspace() or not gap[-1].isspace():
                return self.count(pieces[0].start, pieces[-1].end)
            if not gap.isspace():
                total += self.counter.count(gap)
        return total

    def fits(self, pieces: Sequence[_Piece]) -> bool:
        """Whether consecutive pieces, with the text between them, fit the budget."""
        if sum(piece.tokens for piece in pieces) > self.budget:
            return False
        return self.span_tokens(pieces) <= self.budget

    def emit(self, pieces: Sequence[_Piece], heading_path: tuple[str, ...]) -> None:
        """Append the chunk spanning `pieces`."""
        start, end = pieces[0].start, pieces[-1].end
        self.chunks.append(
            Chunk(
                doc_id=self.doc_id,
                chunk_index=len(self.chunks),
                text=self.text[start:end],
                pages=sorted({piece.page for piece in pieces if piece.page is not None}),
                heading_path=list(heading_path),
                char_start=start,
                char_end=end,
                token_count=self.span_tokens(pieces),
            )
        )

    def chunk_section(self, section: _Section) -> None:
        """Append the chunks of one section, overlapping only with each other."""
        current: list[_Piece] = []
        for block in section.blocks:
            span = _trimmed_span(self.text, block.start, block.start + len(block.text))
            if span is None:
                continue
            pieces = self.split_paragraph(span[0], span[1], block.page)
            whole = _Piece(span[0], span[1], self.span_tokens(pieces), block.page)
            # A paragraph that fits stays whole; a larger one is packed sentence by sentence.
            groups = [pieces] if self.fits([whole]) else [[piece] for piece in pieces]
            for group in groups:
                if current and self.fits(current + group):
                    current.extend(group)
                    continue
                if current:
                    self.emit(current, section.heading_path)
                    current = self.overlap_tail(current, group)
                current.extend(group)
        if current:
            self.emit(current, section.heading_path)

    def overlap_tail(self, previous: list[_Piece], group: list[_Piece]) -> list[_Piece]:
        """Trailing sentences of `previous` worth about `overlap` tokens that fit before `group`."""
        if self.overlap == 0:
            return []
        tail: list[_Piece] = []
        total = 0
        for piece in reversed(previous[1:]):
            if total + piece.tokens > self.overlap:
                break
            tail.insert(0, piece)
            total += piece.tokens
        if not tail:
            tail = self.word_tail(previous[-1])
        while tail and not self.fits(tail + group):
            tail.pop(0)
        return tail

    def word_tail(self, piece: _Piece) -> list[_Piece]:
        """The last words of a sentence longer than the overlap, about `overlap` tokens long."""
        words = list(_WORD.finditer(self.text, piece.start, piece.end))
        counts = self.counter.count_many([word.group() for word in words])
        total, first = 0, len(words)
        while first > 1 and total + counts[first - 1] <= self.overlap:
            first -= 1
            total += counts[first]
        if first == len(words):
            return []
        return [_Piece(words[first].start(), piece.end, total, piece.page)]

    def split_paragraph(self, start: int, end: int, page: int | None) -> list[_Piece]:
        """Sentences of a paragraph, each cut further when it alone exceeds the budget."""
        spans = list(_sentence_spans(self.text, start, end))
        counts = self.counter.count_many([self.text[s:e] for s, e in spans])
        pieces: list[_Piece] = []
        for (s, e), tokens in zip(spans, counts, strict=True):
            if tokens <= self.budget:
                pieces.append(_Piece(s, e, tokens, page))
            else:
                pieces.extend(self.split_words(s, e, page))
        return pieces

    def split_words(self, start: int, end: int, page: int | None) -> list[_Piece]:
        """Runs of whole words within the budget; words longer than the budget cut by tokens."""
        words = list(_WORD.finditer(self.text, start, end))
        counts = self.counter.count_many([word.group() for word in words])
        pieces: list[_Piece] = []
        run: list[re.Match[str]] = []
        run_tokens = 0

        def close_run() -> None:
            nonlocal run, run_tokens
            if run:
                pieces.extend(self.within_budget(run[0].start(), run[-1].end(), page))
            run, run_tokens = [], 0

        for word, tokens in zip(words, counts, strict=True):
            if tokens > self.budget:
                close_run()
                pieces.extend(self.split_tokens(word.start(), word.end(), page))
                continue
            if run_tokens + tokens > self.budget:
                close_run()
            run.append(word)
            run_tokens += tokens
        close_run()
        return pieces

    def within_budget(self, start: int, end: int, page: int | None) -> list[_Piece]:
        """The span as one piece, or cut at word boundaries when its real count is over budget."""
        tokens = self.count(start, end)
        if tokens <= self.budget:
            return [_Piece(start, end, tokens, page)]
        words = list(_WORD.finditer(self.text, start, end))
        if len(words) < 2:
            return self.split_tokens(start, end, page)
        middle = words[len(words) // 2].start()
        return self.within_budget(start, _trimmed_end(self.text, start, middle), page) + (
            self.within_budget(middle, end, page)
        )

    def split_tokens(self, start: int, end: int, page: int | None) -> list[_Piece]:
        """Consecutive token windows of one overlong word."""
        offsets = [start + s for s, _ in self.counter.token_spans(self.text[start:end])]
        offsets[0] = start
        pieces: list[_Piece] = []
        first = 0
        while first < len(offsets):
            last = min(first + self.budget, len(offsets))
            while True:
                piece_end = offsets[last] if last < len(offsets) else end
                tokens = self.count(offsets[first], piece_end)
                # Cutting inside a word can re-tokenize differently; shrink until it fits.
                if tokens <= self.budget or last == first + 1:
                    break
                last -= 1
            pieces.append(_Piece(offsets[first], piece_end, tokens, page))
            first = last
        return pieces


def _trimmed_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without leading and trailing whitespace, or None when nothing is left."""
    end = min(end, len(text))
    while start < end and text[start].isspace():
        start += 1
    end = _trimmed_end(text, start, end)
    return (start, end) if start < end else None


def _trimmed_end(text: str, start: int, end: int) -> int:
    """`end` moved back over trailing whitespace, not past `start`."""
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _is_boundary(text: str, sentence_start: int, match: re.Match[str], end: int) -> bool:
    """Whether a punctuation-and-space (or line break) match ends a sentence."""
    following = match.end()
    if following >= end:
        return False
    nxt = text[following]
    if not (nxt.isupper() or nxt.isdigit() or nxt in _SENTENCE_OPENERS):
        return False
    if text[match.start()] != ".":
        return True
    before = text[sentence_start : match.start()]
    if _ENUMERATOR.fullmatch(before.strip()):
        return False
    words = before.rsplit(maxsplit=1)
    if not words:
        return False  # dots that open the paragraph ("... y luego") end no sentence
    word = words[-1].lstrip(_OPENERS)
    if len(word) == 1 and word.isalpha():
        return False
    return word.lower() not in _ABBREVIATIONS and "." not in word


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Spans of the sentences in text[start:end], whitespace excluded."""
    sentence_start = start
    for match in _BOUNDARY.finditer(text, start, end):
        if _is_boundary(text, sentence_start, match, end):
            sentence_end = _trimmed_end(text, sentence_start, match.end())
            if sentence_end > sentence_start:
                yield sentence_start, sentence_end
            sentence_start = match.end()
    span = _trimmed_span(text, sentence_start, end)
    if span is not None:
        yield span


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of `text`, surrounding whitespace excluded."""
    return list(_sentence_spans(text, 0, len(text)))


def _sections(doc: ParsedDocument) -> list[_Section]:
    """Paragraph blocks grouped under the stack of headings above them."""
    blocks = doc.blocks or _paragraph_blocks(doc.text)
    if not any(block.kind == "paragraph" for block in blocks):
        # A document of headings alone still has text worth finding.
        return [_Section((), tuple(blocks))]
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    current: list[Block] = []
    for block in blocks:
        if block.kind == "paragraph":
            current.append(block)
            continue
        if current:
            sections.append(_Section(tuple(text for _, text in stack), tuple(current)))
            current = []
        level = max(block.level, 1)
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, " ".join(block.text.split())))
    if current:
        sections.append(_Section(tuple(text for _, text in stack), tuple(current)))
    return sections


def _paragraph_blocks(text: str) -> list[Block]:
    """Paragraph blocks of a text that came without structure, split at blank lines."""
    blocks: list[Block] = []
    start = 0
    for separator in [*re.finditer(r"\n[ \t]*\n", text), None]:
        end = len(text) if separator is None else separator.start()
        span = _trimmed_span(text, start, end)
        if span is not None:
            blocks.append(Block(kind="paragraph", text=text[span[0] : span[1]], start=span[0]))
        if separator is not None:
            start = separator.end()
    return blocks


def chunk_document(
    doc: ParsedDocument, config: ChunkingConfig, counter: TokenCounter
) -> list[Chunk]:
    """Chunks of a document: exact slices of its text, by section, within the token budget."""
    budget = config.chunk_tokens
    if budget > counter.max_tokens:
        logger.warning(
            "chunk_tokens %d exceeds the model's %d-token input; using %d",
            budget,
            counter.max_tokens,
            counter.max_tokens,
        )
        budget = counter.max_tokens
    for block in doc.blocks:
        if doc.text[block.start : block.start + len(block.text)] != block.text:
            logger.warning("Block at %d of %s does not match the text", block.start, doc.doc_id)
    chunker = _Chunker(doc, config, counter, budget)
    for section in _sections(doc):
        chunker.chunk_section(section)
    return chunker.chunks


def embedding_text(chunk: Chunk, title: str, counter: TokenCounter | None = None) -> str:
    """The text to embed: title and heading path above the chunk, within the model's input."""
    counter = counter or get_token_counter()
    parts: list[str] = []
    for part in (title, *chunk.heading_path):
        part = " ".join(part.split())
        if part and (not parts or part.casefold() != parts[-1].casefold()):
            parts.append(part)
    # Drop outer headings first: the innermost heading says most about the chunk.
    while parts:
        text = f"{CONTEXT_SEPARATOR.join(parts)}\n\n{chunk.text}"
        if counter.count(text) <= counter.max_tokens:
            return text
        if len(parts) == 1:
            return _truncated_context(parts[0], chunk.text, counter)
        parts.pop(1 if len(parts) > 2 else 0)
    return chunk.text


def _truncated_context(context: str, text: str, counter: TokenCounter) -> str:
    """`context` cut at a token boundary so that context plus text fit the model's input."""
    room = counter.max_tokens - counter.count(text)
    spans = counter.token_spans(context)
    if room <= 0 or not spans:
        return text
    return f"{context[: spans[min(room, len(spans)) - 1][1]]}\n\n{text}"
