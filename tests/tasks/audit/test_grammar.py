"""The grammar auditor on paragraphs built here, on real Debian Reference prose, on a real PDF."""

from __future__ import annotations

from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser

from core.audit_models import Auditor, Box, Finding, Paragraph, Severity, SpellingRule, Word
from tasks.audit.grammar import audit_grammar

CORPUS = Path(__file__).resolve().parents[3] / "benchmarks" / "corpus"
WORD_WIDTH = 40.0
GAP = 4.0


def make_paragraph(text: str, page: int = 1, gaps: dict[int, float] | None = None) -> Paragraph:
    """A one-line paragraph whose word i sits at x = i * (WORD_WIDTH + GAP), or wider gaps."""
    words, x = [], 72.0
    for index, token in enumerate(text.split(" ")):
        x += (gaps or {}).get(index, GAP if index else 0.0)
        words.append(Word(text=token, box=Box(x0=x, y0=700.0, x1=x + WORD_WIDTH, y1=711.0)))
        x += WORD_WIDTH
    return Paragraph(page=page, text=text, words=words)


def audit(*texts: str, **rule: object) -> list[Finding]:
    """The grammar findings of paragraphs given as text (one page each)."""
    paragraphs = [make_paragraph(text, page=n) for n, text in enumerate(texts, start=1)]
    return audit_grammar(paragraphs, SpellingRule.model_validate(rule))


def by_rule(findings: list[Finding], rule: str) -> list[tuple[str | None, str | None]]:
    """(actual, suggestion) of the findings of one rule."""
    return [(f.actual, f.suggestion) for f in findings if f.rule == f"grammar.{rule}"]


def corpus_paragraph(language: str, chapter: str, start: str) -> str:
    """The text of the corpus paragraph (Debian Reference, GPL-2+) that begins with `start`."""
    html = (CORPUS / language / f"{chapter}.{language}.html").read_text(encoding="utf-8")
    for node in LexborHTMLParser(html).css("p"):
        text = " ".join(node.text(separator="").split())
        if text.startswith(start):
            return text
    raise LookupError(start)


@pytest.mark.parametrize(
    ("text", "actual", "suggestion"),
    [
        # English: a swap, a dropped letter, a doubled letter
        (
            "The init program is exectued as the first program of the system.",
            "exectued",
            "executed",
        ),
        ("Every pakage declares the packages it depends on.", "pakage", "package"),
        ("The boot loader loads the kernel imagge into memory.", "imagge", "image"),
        # Spanish: a missing accent, a swap, a dropped letter
        ("La configuracion de red se guarda en este archivo.", "configuracion", "configuración"),
        ("El gestor de paquetes mantiene el sitsema actualizado.", "sitsema", "sistema"),
        ("Cada paquete declara las dependecias que necesita.", "dependecias", "dependencias"),
    ],
)
def test_grammar_spelling_finds_planted_misspelling(
    text: str, actual: str, suggestion: str
) -> None:
    findings = audit(text)
    assert by_rule(findings, "spelling") == [(actual, suggestion)]
    assert findings == [f for f in findings if f.rule == "grammar.spelling"]


def test_grammar_spelling_finding_fields_locate_the_word_in_both_languages() -> None:
    paragraph = make_paragraph("El gestor de paquetes mantiene el sitsema actualizado.", page=3)
    [finding] = audit_grammar([paragraph], SpellingRule(severity=Severity.ERROR))
    assert finding.auditor == Auditor.GRAMMAR
    assert finding.rule == "grammar.spelling"
    assert finding.severity == Severity.ERROR
    assert finding.page == 3
    assert finding.box == paragraph.words[6].box
    assert (finding.actual, finding.expected, finding.suggestion) == (
        "sitsema",
        "sistema",
        "sistema",
    )
    assert "ortográfico" in finding.message and "sitsema" in finding.message
    assert "misspelling" in finding.message_en and "sistema" in finding.message_en


def test_grammar_english_finding_message_is_english() -> None:
    [finding] = audit("Every pakage declares the packages it depends on.")
    assert finding.message == finding.message_en
    assert "misspelling" in finding.message


@pytest.mark.parametrize(
    ("language", "chapter", "start"),
    [
        ("en", "ch03", "The init program is executed as the first program"),
        ("en", "ch03", "The configuration files for the modprobe(8) program"),
        ("es", "ch03", "El cargador de arranque es la segunda fase"),
        ("es", "ch03", "Tras el arranque del sistema (esencialmente init)"),
    ],
)
def test_grammar_real_prose_flags_nothing(language: str, chapter: str, start: str) -> None:
    text = corpus_paragraph(language, chapter, start)
    assert len(text.split()) > 30
    assert audit(text) == []


def test_grammar_ligatures_and_decomposed_accents_read_as_plain_words() -> None:
    # "ﬁ" ligature, "o" + combining acute accent, and a soft hyphen inside a word
    text = "El archivo de conﬁguración guarda la conﬁguracio\u0301n y la instala\u00adción."
    assert audit(text) == []
    assert by_rule(audit("La conﬁguracion se guarda aquí."), "spelling") == [
        ("configuracion", "configuración")
    ]


def test_grammar_glossary_words_are_never_flagged() -> None:
    text = "Los informes de Octavius usan el formato pipelinez para cada tarea."
    assert by_rule(audit(text), "spelling") == [("pipelinez", "pipeline")]
    assert audit(text, glossary=["Pipelinez"]) == []
    assert audit(text, glossary=["octavius pipelinez"]) == []


def test_grammar_spells_only_the_policy_languages() -> None:
    spanish = "El gestor de paquetes mantiene el sitsema actualizado."
    english = "Every pakage declares the packages it depends on."
    findings = audit(spanish, english, languages=["en"])
    assert by_rule(findings, "spelling") == [("pakage", "package")]
    assert [f.page for f in findings] == [2]


@pytest.mark.parametrize(
    "text",
    [
        # paths, commands, versions, URLs, e-mail, identifiers, acronyms, names mid-sentence
        "Edit /etc/apt/sources.list and run apt-get update as root.",
        "Install libc6 and python3 from https://deb.debian.org/debian today.",
        "Write to debian-user@lists.debian.org about the foo_bar setting.",
        "The ACPI tables and GnuPG keys are read by the Shorewall firewall.",
        "Edite el archivo /etc/hostname y ejecute systemctl para reiniciar el servicio.",
        "Unix-style names such as sshd and dselect are commands, not typos.",
    ],
)
def test_grammar_code_names_and_acronyms_are_not_flagged(text: str) -> None:
    assert by_rule(audit(text), "spelling") == []


def test_grammar_a_word_used_three_times_is_a_term_of_the_document() -> None:
    sentence = "The configuraton is read at boot."
    assert by_rule(audit(sentence), "spelling") == [("configuraton", "configuration")]
    assert by_rule(audit(sentence, sentence), "spelling") == [("configuraton", "configuration")] * 2
    assert by_rule(audit(sentence, sentence, sentence), "spelling") == []


@pytest.mark.parametrize(
    ("text", "actual"),
    [
        ("Packages outside of the the Debian system are hosted elsewhere.", "the the"),
        ("La lista de de paquetes se actualiza cada día.", "de de"),
        ("Los paquetes paquetes se instalan con apt.", "paquetes paquetes"),
    ],
)
def test_grammar_repeated_word_is_found(text: str, actual: str) -> None:
    findings = audit(text)
    assert [(f.rule, f.actual) for f in findings] == [("grammar.repeated_word", actual)]
    assert findings[0].suggestion == actual.split(" ")[0]


@pytest.mark.parametrize(
    "text",
    [
        "He said that that package was removed.",  # legitimate doubled "that"
        "Run it once. Once done, reboot.",  # punctuation between the two
        "They flew to Bora Bora last year.",  # a name made of a doubled word
    ],
)
def test_grammar_legitimate_doubles_are_not_flagged(text: str) -> None:
    assert by_rule(audit(text), "repeated_word") == []


@pytest.mark.parametrize(
    ("text", "actual", "suggestion"),
    [
        ("El paquete se instala en el sistema , y se configura después.", "sistema ,", "sistema,"),
        ("The package is installed on the system .", "system .", "system."),
        (
            "Instale los archivos,después reinicie el equipo.",
            "archivos,después",
            "archivos, después",
        ),
        ("The system was updated.Then it was restarted.", "updated.Then", "updated. Then"),
    ],
)
def test_grammar_spacing_around_punctuation(text: str, actual: str, suggestion: str) -> None:
    assert by_rule(audit(text), "spacing") == [(actual, suggestion)]


@pytest.mark.parametrize(
    "text",
    [
        "The archive holds 1,000 packages at version 2.100 on debian.org today.",
        "Run the command in the current directory ( . ) as described.",
        "Pulsando ? se muestra la ayuda de la orden, y ls . muestra el directorio.",
        "See the files README.Debian and changelog.Debian for details.",
    ],
)
def test_grammar_spacing_leaves_numbers_names_and_symbols_alone(text: str) -> None:
    assert by_rule(audit(text), "spacing") == []


def test_grammar_double_space_is_found_from_word_gaps() -> None:
    text = "The package manager keeps track of every file it installs."
    paragraph = make_paragraph(text, gaps={2: 2 * GAP})
    findings = audit_grammar([paragraph], SpellingRule())
    assert [(f.rule, f.actual) for f in findings] == [("grammar.spacing", "package  manager")]
    assert findings[0].box == Box(
        x0=paragraph.words[1].box.x0, y0=700, x1=paragraph.words[2].box.x1, y1=711
    )


@pytest.mark.parametrize(
    ("text", "gaps"),
    [
        # TeX sets a wider space after a full stop or a comma
        ("The package was removed. Its files were kept on the disk.", {4: 2 * GAP}),
        ("When the package was removed, its files were kept on disk.", {5: 2 * GAP}),
        # several wide gaps on one line are alignment (a table row), not typing
        ("Name Size Version Package manager keeps every file", {1: 2 * GAP, 2: 2 * GAP}),
        # a bullet, or a number, set off from its item
        ("• The package manager keeps track of every file.", {1: 2 * GAP}),
    ],
)
def test_grammar_wide_gaps_that_are_not_double_spaces(text: str, gaps: dict[int, float]) -> None:
    assert audit_grammar([make_paragraph(text, gaps=gaps)], SpellingRule()) == []


@pytest.mark.parametrize(
    "text",
    [
        "1 Introduction . . . . . . . . . . . . . . . . . . 3",
        "int asn1_der_coding ( asn1_node element , const char * name , void * der ) ;",
        "00000000 4d 49 4d 45 2d 4d 61 67 69 63 00 0a 5b 35 30 3a |MIME-Magic..[50:|",
    ],
)
def test_grammar_code_and_tables_of_contents_get_no_punctuation_findings(text: str) -> None:
    assert [f for f in audit(text) if f.rule != "grammar.spelling"] == []


@pytest.mark.parametrize(
    ("text", "actual", "suggestion"),
    [
        (
            "Qué hace el gestor de paquetes?",
            "Qué hace el gestor de paquetes?",
            "¿Qué hace el gestor de paquetes?",
        ),
        ("Si falla, pruebe otra vez. Funciona ahora?", "Funciona ahora?", "¿Funciona ahora?"),
        ("¿Qué hace el gestor de paquetes.", "¿Qué", None),
        ("Cuidado con esa orden!", "Cuidado con esa orden!", "¡Cuidado con esa orden!"),
        ("¡Cuidado con esa orden.", "¡Cuidado", None),
    ],
)
def test_grammar_spanish_question_and_exclamation_marks_pair(
    text: str, actual: str, suggestion: str | None
) -> None:
    assert by_rule(audit(text), "punctuation_pairing") == [(actual, suggestion)]


@pytest.mark.parametrize(
    "text",
    [
        "¿Qué hace el gestor de paquetes? ¡Nada más que instalar!",
        "Si falla, ¿qué hacemos? Pruebe de nuevo.",
        "El patrón «?broken» y la línea «!Package» son términos de búsqueda.",
        "What does the package manager do? It installs packages!",  # English needs no opening mark
    ],
)
def test_grammar_balanced_or_english_marks_are_not_flagged(text: str) -> None:
    assert by_rule(audit(text), "punctuation_pairing") == []


@pytest.mark.parametrize(
    ("text", "actual", "expected"),
    [
        ("El paquete esta instalado en el sistema.", "esta", "está"),
        ("El servicio esta ejecutando la tarea.", "esta", "está"),
        ("El archivo esta en el directorio de configuración.", "esta", "está"),
        ("La opción esta configurada de esa manera.", "esta", "está"),
        ("El disco esta roto y hay que cambiarlo.", "esta", "está"),
        ("Cada vez es mas rápido.", "mas", "más"),
        ("Consulte el manual para obtener mas información.", "mas", "más"),
        ("El paquete fue creado para el.", "el", "él"),
        ("Lo sabes porque tu eres el administrador.", "tu", "tú"),
        ("Lo hizo para mi.", "mi", "mí"),
        ("Compruébelo por si mismo antes de actualizar.", "si", "sí"),
        ("Yo se que funciona.", "se", "sé"),
        ("El paquete aun no está disponible.", "aun", "aún"),
        ("¿Como se configura la red?", "¿Como", "Cómo"),
        ("¿Por que falla la actualización?", "que", "qué"),
    ],
)
def test_grammar_spanish_accent_confusions_in_context(
    text: str, actual: str, expected: str
) -> None:
    findings = audit(text)
    assert [(f.rule, f.expected) for f in findings] == [("grammar.accent", expected)]
    assert findings[0].actual == actual.strip("¿")
    assert findings[0].suggestion == expected


@pytest.mark.parametrize(
    "text",
    [
        "Esta opción está disponible en esta entrada del menú.",
        "Esta llamada al sistema devuelve el estado del proceso.",
        "Lo intentó varias veces, mas no pudo instalarlo.",
        "El paquete se instala si el sistema lo necesita.",
        "Aun así, el paquete se instala sin problemas.",
        "Tu sistema usa el núcleo de Linux y el gestor de paquetes.",
        "Mi equipo tiene dos discos y se configura con el instalador.",
        "Los paquetes que se instalan son los que necesita.",
        "El programa MAS calcula el resultado y lo guarda.",
    ],
)
def test_grammar_correct_unaccented_words_are_not_flagged(text: str) -> None:
    assert audit(text) == []


def test_grammar_english_paragraphs_get_no_spanish_accent_rules() -> None:
    assert audit("The word esta en Spanish means this, and mas means but.") == []


def test_grammar_findings_in_a_real_pdf(tmp_path: Path) -> None:
    from tasks.audit.layout import read_paragraphs
    from tests.audit_docgen import hyphenate, make_audit_pdf

    spanish = (
        "El gestor de paquetes mantiene el sitsema actualizado y registra cada archivo que "
        "instala. El paquete esta instalado en el disco y la lista de de paquetes se guarda "
        "en el directorio de configuración."
    )
    english = (
        "Every pakage declares the other packages it depends on, and the package manager "
        "installs them before it unpacks the package itself."
    )
    clean = hyphenate(
        "La configuración de red se guarda en un archivo de texto que el administrador puede "
        "editar con cualquier editor.",
        "administrador",
        5,
    )
    pdf = make_audit_pdf(tmp_path / "grammar.pdf", [[spanish, clean], [english]])
    paragraphs = read_paragraphs(pdf)
    findings = audit_grammar(paragraphs, SpellingRule())
    assert sorted((f.page, f.rule, f.actual, f.suggestion) for f in findings) == [
        (1, "grammar.accent", "esta", "está"),
        (1, "grammar.repeated_word", "de de", "de"),
        (1, "grammar.spelling", "sitsema", "sistema"),
        (2, "grammar.spelling", "pakage", "package"),
    ]
    for finding in findings:
        words = [w for p in paragraphs if p.page == finding.page for w in p.words]
        first = (finding.actual or "").split(" ")[0]
        located = [w.box for w in words if w.text.strip(".,") == first]
        assert finding.box is not None
        assert any(
            abs(finding.box.x0 - box.x0) < 0.5 and abs(finding.box.y0 - box.y0) < 0.5
            for box in located
        )
