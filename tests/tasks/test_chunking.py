"""Tests of structure-aware chunking on documents built in the tests."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import tasks.chunking as chunking
from core.embedder import default_model_path
from core.models import Block, Chunk, DocumentFormat, ParsedDocument
from core.settings import Settings
from core.tokens import TokenCounter
from tasks.chunking import (
    ChunkingConfig,
    chunk_document,
    chunking_config,
    embedding_text,
    split_sentences,
)

SPANISH = [
    "El administrador debe revisar los registros del sistema todas las mañanas.",
    "¿Qué ocurre si el disco se llena durante la noche?",
    "En ese caso, el servicio de correo deja de aceptar mensajes y los usuarios no reciben avisos.",
    "¡Compruebe siempre el espacio libre con df -h antes de actualizar!",
    "Según el Sr. García, responsable de sistemas, las copias se hacen a las 02:00 h.",
    "La política de contraseñas exige al menos doce caracteres, mayúsculas y números.",
    "Los paquetes se instalan con apt-get install y se eliminan con apt-get purge.",
    "Cada servidor tiene una ficha con su dirección IP, su función y la persona de contacto.",
    "Las incidencias graves se comunican por teléfono, no por correo electrónico.",
    "El cortafuegos bloquea por defecto todo el tráfico entrante salvo SSH y HTTPS.",
    "Antes de reiniciar un servidor de producción hay que avisar con un día de antelación.",
    "Los registros antiguos se comprimen cada semana y se borran a los noventa días.",
]
ENGLISH = [
    "The administrator reviews the system logs every morning before nine.",
    "What happens when the disk fills up during the night?",
    "In that case the mail service stops accepting messages and users get no warnings.",
    "Always check the free space with df -h before an upgrade!",
    "According to Dr. Smith, head of operations, backups run at 2 a.m. every day.",
    "The password policy requires at least twelve characters, capitals and digits.",
    "Packages are installed with apt-get install and removed with apt-get purge.",
    "Each server has a record with its IP address, its role and a contact person.",
    "Serious incidents are reported by phone, never by e-mail.",
    "The firewall blocks all incoming traffic by default except SSH and HTTPS.",
]

Item = tuple[str, int, int | None]  # text, heading level (0 for a paragraph), page


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    """Counter of the bundled model."""
    return TokenCounter.from_model_dir(default_model_path())


def paragraph(sentences: list[str], first: int, count: int) -> str:
    """`count` sentences of a pool starting at `first`, wrapping around."""
    return " ".join(itertools.islice(itertools.cycle(sentences), first, first + count))


def make_doc(items: list[Item], fmt: DocumentFormat = DocumentFormat.PDF) -> ParsedDocument:
    """A parsed document whose text is the items joined by blank lines."""
    blocks: list[Block] = []
    offset = 0
    for text, level, page in items:
        kind = "heading" if level else "paragraph"
        blocks.append(Block(kind=kind, text=text, level=level, page=page, start=offset))
        offset += len(text) + 2
    return ParsedDocument(
        doc_id="doc-1",
        source="guia.pdf",
        format=fmt,
        content_hash="0" * 64,
        title="Guía de administración",
        language="es",
        page_count=max([page or 1 for _, _, page in items], default=1),
        text="\n\n".join(text for text, _, _ in items),
        blocks=blocks,
    )


def structured_doc() -> ParsedDocument:
    """Two chapters with sections, long and short paragraphs, over four pages."""
    return make_doc(
        [
            ("1. Operación diaria", 1, 1),
            (paragraph(SPANISH, 0, 3), 0, 1),
            ("1.1 Registros", 2, 1),
            (paragraph(SPANISH, 3, 14), 0, 1),
            (paragraph(SPANISH, 5, 4), 0, 2),
            ("1.2 Copias de seguridad", 2, 2),
            (paragraph(SPANISH, 1, 30), 0, 2),
            ("2. Daily operation", 1, 3),
            (paragraph(ENGLISH, 0, 25), 0, 3),
            (paragraph(ENGLISH, 4, 2), 0, 4),
            (paragraph(ENGLISH, 7, 9), 0, 4),
        ]
    )


def covered(chunks: list[Chunk]) -> set[int]:
    """Offsets of document text covered by some chunk."""
    return {i for chunk in chunks for i in range(chunk.char_start, chunk.char_end)}


@pytest.mark.parametrize(
    ("chunk_tokens", "overlap_tokens"),
    [
        (200, 32),  # the default settings
        (254, 0),  # the model's whole input, no overlap
        (64, 16),  # small chunks: long paragraphs split on sentences
        (16, 8),  # smallest allowed: most sentences split on words
    ],
)
def test_chunk_document_slices_and_token_bounds(
    counter: TokenCounter, chunk_tokens: int, overlap_tokens: int
) -> None:
    doc = structured_doc()
    config = ChunkingConfig(chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
    chunks = chunk_document(doc, config, counter)
    assert [chunk.chunk_index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.char_start : chunk.char_end]
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == counter.count(chunk.text)
        assert 0 < chunk.token_count <= chunk_tokens


def test_chunk_document_covers_every_paragraph(counter: TokenCounter) -> None:
    doc = structured_doc()
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=64, overlap_tokens=16), counter)
    seen = covered(chunks)
    for block in doc.blocks:
        inside = {i for i in range(block.start, block.start + len(block.text))}
        non_space = {i for i in inside if not doc.text[i].isspace()}
        if block.kind == "paragraph":
            assert non_space <= seen
        else:
            assert not inside & seen


def test_chunk_document_packs_short_paragraphs(counter: TokenCounter) -> None:
    doc = make_doc([(paragraph(ENGLISH, i, 1), 0, None) for i in range(6)])
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    assert len(chunks) == 1
    assert chunks[0].text == doc.text
    assert chunks[0].text.count("\n\n") == 5


def test_chunk_document_heading_paths(counter: TokenCounter) -> None:
    doc = structured_doc()
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    paths = [tuple(chunk.heading_path) for chunk in chunks]
    assert list(dict.fromkeys(paths)) == [
        ("1. Operación diaria",),
        ("1. Operación diaria", "1.1 Registros"),
        ("1. Operación diaria", "1.2 Copias de seguridad"),
        ("2. Daily operation",),
    ]


def test_chunk_document_nested_heading_levels_pop(counter: TokenCounter) -> None:
    doc = make_doc(
        [
            ("A", 1, None),
            ("A.1", 2, None),
            ("A.1.a", 3, None),
            (SPANISH[0], 0, None),
            ("A.2", 2, None),
            (SPANISH[1], 0, None),
            ("B", 1, None),
            ("B.1.a", 3, None),
            (SPANISH[2], 0, None),
        ]
    )
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    assert [chunk.heading_path for chunk in chunks] == [
        ["A", "A.1", "A.1.a"],
        ["A", "A.2"],
        ["B", "B.1.a"],
    ]


def test_chunk_document_overlap_within_section(counter: TokenCounter) -> None:
    doc = structured_doc()
    config = ChunkingConfig(chunk_tokens=100, overlap_tokens=32)
    chunks = chunk_document(doc, config, counter)
    overlaps = 0
    for previous, chunk in itertools.pairwise(chunks):
        if previous.heading_path != chunk.heading_path:
            assert chunk.char_start > previous.char_end
            continue
        if chunk.char_start < previous.char_end:
            overlaps += 1
            shared = doc.text[chunk.char_start : previous.char_end]
            assert 0 < counter.count(shared) <= config.overlap_tokens
    assert overlaps >= len(chunks) // 2


def test_chunk_document_overlap_starts_at_sentence(counter: TokenCounter) -> None:
    doc = make_doc([(paragraph(ENGLISH, 0, 30), 0, None)])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=100, overlap_tokens=40), counter)
    starts = {m.start() for s in ENGLISH for m in re.finditer(re.escape(s), doc.text)}
    assert len(chunks) > 3
    assert all(chunk.char_start in starts or chunk.char_start == 0 for chunk in chunks)
    assert all(b.char_start < a.char_end for a, b in itertools.pairwise(chunks))


def test_chunk_document_no_overlap_when_zero(counter: TokenCounter) -> None:
    doc = make_doc([(paragraph(SPANISH, 0, 40), 0, None)])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=80, overlap_tokens=0), counter)
    assert len(chunks) > 3
    assert all(b.char_start > a.char_end for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        # paragraphs on pages 1, 2 and 3 packed into one chunk
        ([(SPANISH[0], 0, 1), (SPANISH[1], 0, 2), (SPANISH[2], 0, 3)], [[1, 2, 3]]),
        # a format without pages
        ([(SPANISH[0], 0, None), (SPANISH[1], 0, None)], [[]]),
        # a heading on page 1 does not count for a paragraph on page 2
        ([("Título", 1, 1), (SPANISH[0], 0, 2)], [[2]]),
        # a long paragraph on page 5 split in several chunks: each on page 5
        ([(paragraph(SPANISH, 0, 20), 0, 5)], [[5]]),
        # two long paragraphs on pages 5 and 6: one chunk packs the end of one and start of other
        ([(paragraph(SPANISH, 0, 9), 0, 5), (paragraph(SPANISH, 4, 9), 0, 6)], [[5], [5, 6], [6]]),
    ],
)
def test_chunk_document_pages(
    counter: TokenCounter, items: list[Item], expected: list[list[int]]
) -> None:
    chunks = chunk_document(make_doc(items), ChunkingConfig(chunk_tokens=120), counter)
    # Page lists in order, repeats of the same list collapsed.
    assert [list(pages) for pages in dict.fromkeys(tuple(c.pages) for c in chunks)] == expected


def test_chunk_document_pages_span_boundary(counter: TokenCounter) -> None:
    doc = structured_doc()
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    spanning = [chunk for chunk in chunks if chunk.pages == [1, 2]]
    assert spanning
    assert all(chunk.heading_path[-1] == "1.1 Registros" for chunk in spanning)


def test_chunk_document_enormous_sentence(counter: TokenCounter) -> None:
    words = " ".join(f"palabra{i % 97} y" for i in range(3000))
    doc = make_doc([("Anexo", 1, 1), (words, 0, 1)])
    config = ChunkingConfig(chunk_tokens=200, overlap_tokens=0)
    chunks = chunk_document(doc, config, counter)
    assert len(chunks) >= counter.count(words) // 200
    assert all(chunk.token_count <= 200 for chunk in chunks)
    assert all(doc.text[chunk.char_end] == " " for chunk in chunks[:-1])
    assert {i for i in range(len(doc.text)) if not doc.text[i].isspace()} - covered(chunks) == {
        i for i in range(len("Anexo"))
    }


def test_chunk_document_enormous_word(counter: TokenCounter) -> None:
    # A long path: one run without spaces, but many word pieces.
    blob = "/".join(f"dir{i}" for i in range(400))
    doc = make_doc([(f"Ruta: {blob} fin.", 0, None)])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=64, overlap_tokens=0), counter)
    assert len(chunks) > 10
    assert all(0 < chunk.token_count <= 64 for chunk in chunks)
    assert "".join("".join(chunk.text.split()) for chunk in chunks) == "".join(doc.text.split())


def test_chunk_document_deterministic(counter: TokenCounter) -> None:
    config = ChunkingConfig(chunk_tokens=90, overlap_tokens=20)
    first = chunk_document(structured_doc(), config, counter)
    second = chunk_document(structured_doc(), config, counter)
    assert [chunk.model_dump() for chunk in first] == [chunk.model_dump() for chunk in second]


def test_chunk_document_clamps_to_model_input(counter: TokenCounter) -> None:
    doc = make_doc([(paragraph(ENGLISH, 0, 40), 0, None)])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=512, overlap_tokens=0), counter)
    assert max(chunk.token_count for chunk in chunks) <= counter.max_tokens == 254
    assert max(chunk.token_count for chunk in chunks) > 200


@pytest.mark.parametrize(
    ("text", "paragraphs"),
    [
        ("", 0),  # empty document
        ("Una sola línea.", 1),  # one paragraph
        ("Primero.\n\n\n  Segundo con espacios.  \n \nTercero.\n", 3),  # ragged blank lines
    ],
)
def test_chunk_document_without_blocks(counter: TokenCounter, text: str, paragraphs: int) -> None:
    doc = make_doc([]).model_copy(update={"text": text, "blocks": []})
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    assert len(chunks) == min(paragraphs, 1)
    for chunk in chunks:
        assert chunk.text == text.strip()


def test_chunk_document_headings_only(counter: TokenCounter) -> None:
    doc = make_doc([("Índice", 1, 1), ("Capítulo 1", 2, 1), ("Capítulo 2", 2, 2)])
    chunks = chunk_document(doc, ChunkingConfig(), counter)
    assert [(chunk.text, chunk.pages) for chunk in chunks] == [(doc.text, [1, 2])]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Spanish opening marks start sentences
        (
            "¿Dónde está el fichero? Está en /etc. ¡No lo borre!",
            ["¿Dónde está el fichero?", "Está en /etc.", "¡No lo borre!"],
        ),
        # abbreviations and initials do not end sentences
        (
            "Lo dijo el Sr. García. Lo confirmó J. Smith en EE.UU. ayer.",
            ["Lo dijo el Sr. García.", "Lo confirmó J. Smith en EE.UU. ayer."],
        ),
        # words that look like abbreviations but end sentences here
        (
            "Le pregunté si vendría y dijo que no. Fue hace dos años. It was years ago. Then.",
            [
                "Le pregunté si vendría y dijo que no.",
                "Fue hace dos años.",
                "It was years ago.",
                "Then.",
            ],
        ),
        # English abbreviations
        ("Ask Dr. Brown, e.g. Tuesday. Then stop.", ["Ask Dr. Brown, e.g. Tuesday.", "Then stop."]),
        # list enumerators stay with their item; decimals are not boundaries
        ("1. Instale 2.5 o superior. 2. Reinicie.", ["1. Instale 2.5 o superior.", "2. Reinicie."]),
        # closing quotes belong to the sentence; lowercase after "?" continues it
        (
            "«¿Vienes?», preguntó. «Sí.» Fue todo.",
            ["«¿Vienes?», preguntó.", "«Sí.»", "Fue todo."],
        ),
        # a line break before a capital starts a new line-sentence (lists, PDF lines)
        ("Requisitos\nMemoria de 2 GB\ny disco", ["Requisitos", "Memoria de 2 GB\ny disco"]),
        # dots that open the text end no sentence (this raised IndexError once)
        ("... Y luego nada. Fin.", ["... Y luego nada.", "Fin."]),
    ],
)
def test_split_sentences_cases(text: str, expected: list[str]) -> None:
    assert [text[start:end] for start, end in split_sentences(text)] == expected


def test_chunking_config_fingerprint_stable() -> None:
    assert ChunkingConfig().fingerprint() == ChunkingConfig().fingerprint()
    assert len(ChunkingConfig().fingerprint()) == 12


@pytest.mark.parametrize(
    "other",
    [
        ChunkingConfig(chunk_tokens=201),  # size
        ChunkingConfig(overlap_tokens=0),  # overlap
    ],
)
def test_chunking_config_fingerprint_changes(other: ChunkingConfig) -> None:
    assert other.fingerprint() != ChunkingConfig().fingerprint()


def test_chunking_config_fingerprint_includes_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = ChunkingConfig().fingerprint()
    monkeypatch.setattr(chunking, "CHUNKER_VERSION", "test")
    assert ChunkingConfig().fingerprint() != before


def test_chunking_config_rejects_large_overlap() -> None:
    with pytest.raises(ValidationError):
        ChunkingConfig(chunk_tokens=64, overlap_tokens=33)


def test_chunking_config_from_settings() -> None:
    settings = Settings(chunk_tokens=180, chunk_overlap_tokens=24)
    assert ChunkingConfig.from_settings(settings) == ChunkingConfig(
        chunk_tokens=180, overlap_tokens=24
    )


def test_chunking_config_reads_settings() -> None:
    assert chunking_config(Settings(chunk_tokens=150)).chunk_tokens == 150
    assert chunking_config() == ChunkingConfig.from_settings(Settings())


def make_chunk(text: str, heading_path: list[str], counter: TokenCounter) -> Chunk:
    """A chunk of `text` with its real token count."""
    return Chunk(
        doc_id="doc-1",
        chunk_index=0,
        text=text,
        heading_path=heading_path,
        char_start=0,
        char_end=len(text),
        token_count=counter.count(text),
    )


def test_embedding_text_prepends_context(counter: TokenCounter) -> None:
    chunk = make_chunk(SPANISH[0], ["1. Operación", "1.1 Registros"], counter)
    assert embedding_text(chunk, "Guía", counter) == (
        f"Guía > 1. Operación > 1.1 Registros\n\n{SPANISH[0]}"
    )


@pytest.mark.parametrize(
    ("title", "path", "expected_context"),
    [
        ("Guía", ["Guía", "Uso"], "Guía > Uso"),  # title repeated as the first heading
        ("", ["Uso"], "Uso"),  # no title
        ("  Guía \n de uso ", [], "Guía de uso"),  # whitespace collapsed
    ],
)
def test_embedding_text_context_cases(
    counter: TokenCounter, title: str, path: list[str], expected_context: str
) -> None:
    chunk = make_chunk(SPANISH[1], path, counter)
    assert embedding_text(chunk, title, counter) == f"{expected_context}\n\n{SPANISH[1]}"


def test_embedding_text_no_context(counter: TokenCounter) -> None:
    chunk = make_chunk(SPANISH[1], [], counter)
    assert embedding_text(chunk, "", counter) == SPANISH[1]


def test_embedding_text_within_model_input(counter: TokenCounter) -> None:
    doc = make_doc([(paragraph(ENGLISH, 0, 40), 0, None)])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=240), counter)
    long_heading = paragraph(SPANISH, 0, 3)
    for chunk in chunks:
        chunk = chunk.model_copy(update={"heading_path": ["Parte", long_heading]})
        text = embedding_text(chunk, "Manual", counter)
        assert counter.count(text) <= counter.max_tokens
        assert text.endswith(chunk.text)
        # The innermost heading is the last part of the context to go.
        assert long_heading[:20] in text


_TOKENS = st.sampled_from(
    [
        "Paris",
        "año",
        "über",
        "3.14",
        "e.g.",
        "¿Qué?",
        "¡Sí!",
        "—",
        "«cita»",
        "x" * 300,
        "déjà-vu",
        "U.S.",
        "...",
        "(nota)",
        "A.",
        "z",
        "日本",
        "🙂",
        "co-op",
        "end.",
    ]
)
_GAPS = st.sampled_from([" ", "  ", "\n", " \n ", "\t", "", " • ", "\u00a0"])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_TOKENS, _GAPS), min_size=1, max_size=120))
    return "".join(token + gap for token, gap in parts)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paragraphs=st.lists(_texts(), min_size=1, max_size=6), tokens=st.sampled_from([16, 40, 200]))
def test_chunk_document_sums_counts_exactly(
    counter: TokenCounter, paragraphs: list[str], tokens: int
) -> None:
    """Adding up whitespace-separated counts gives the chunks a full recount would."""
    assert counter.splits_at_whitespace
    doc = make_doc([(text, 0, 1) for text in paragraphs])
    config = ChunkingConfig(chunk_tokens=tokens, overlap_tokens=tokens // 4)
    summed = chunk_document(doc, config, counter)
    recounting = TokenCounter.from_model_dir(default_model_path())
    recounting.splits_at_whitespace = False
    assert summed == chunk_document(doc, config, recounting)
    assert all(chunk.token_count == counter.count(chunk.text) for chunk in summed)
