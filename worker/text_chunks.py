"""Split long text into sentence chunks under a token budget, and join translated pieces back together.

SeamlessM4T v2 translates short inputs well but silently drops sentences when it is given a long text in one call.
A long document is therefore cut into paragraphs (blank lines), each paragraph into sentences (``sentencex``, a
rule-based segmenter, plus the fix-ups below), and the sentences are packed greedily, in order, into chunks of at
most ``max_tokens`` tokens as counted by the caller's ``count_tokens`` (the model tokenizer's length). The chunks
are translated in batches and :func:`join_chunks` glues the translations back, keeping the paragraph breaks.
Long audio is translated in segments; :func:`join_segment_texts` joins their texts and removes the words that
two overlapping segments both heard.

Decisions worth knowing:

* Paragraphs are separated by a blank line (a line holding only whitespace counts as blank). A single line break
  inside a paragraph is treated as a space (hard-wrapped prose), or dropped between two CJK characters
  (hard-wrapped Chinese or Japanese). Line structure inside a paragraph (lists, poems) is therefore not kept in
  the output; put blank lines between items to keep them apart.
* A sentence over the budget is cut at the best places that keep every piece within it: after clause
  punctuation first, then at whitespace, and only then at a character boundary (never before a combining mark),
  which is what happens to a long CJK run. Pieces are balanced (a 130-token sentence with a 128 budget gives two
  pieces of about 65, not 128 + 2), and the first piece of a cut sentence always starts a new chunk. If a single
  character is already over the budget (a ``count_tokens`` that adds special tokens with a tiny budget), it is
  emitted alone: the budget cannot be met and nothing is dropped.
* ``NO_SPACE_LANGS`` are the languages written without spaces between *words*: overlaps between audio segments
  are compared character by character there. Only CJK (``NO_SENTENCE_SPACE_LANGS``) also goes without a space
  between *sentences*: Thai, Lao, Khmer and Burmese do put a space between sentences and phrases, so their pieces
  are joined with a space.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shared.languages import NO_SENTENCE_SPACE_LANGS, NO_SPACE_LANGS, sentence_separator

__all__ = [
    "NO_SENTENCE_SPACE_LANGS",
    "NO_SPACE_LANGS",
    "TextChunk",
    "chunk_text",
    "join_chunks",
    "join_segment_texts",
    "sentencex_code",
    "split_sentences",
]

Segmenter = Callable[[str, str], list[str]]


def _load_segmenter() -> Segmenter:
    # sentencex ships neither stubs nor py.typed: give its one function a type here, at the boundary.
    segment: Segmenter = importlib.import_module("sentencex").segment
    return segment


_segment = _load_segmenter()

# Written without spaces between words (Han, kana, Thai, Lao, Khmer, Burmese scripts).

# Our 3-letter codes (shared/languages.py) -> the code sentencex expects. ISO 639-1 where there is one; otherwise
# the ISO 639-3 code, which sentencex knows through its fallback chains (ast -> es, kea -> pt, mai -> hi, ...)
# or does not know (then it segments with its English rules, which split on every script's terminators).
# Only ~30 languages have their own rules in sentencex (abbreviations mostly); all others use the English ones.
_SENTENCEX_CODES: dict[str, str] = {
    "afr": "af",
    "amh": "am",
    "arb": "ar",
    "ary": "ar",
    "arz": "ar",
    "asm": "as",
    "ast": "ast",
    "azj": "az",
    "bel": "be",
    "ben": "bn",
    "bos": "bs",
    "bul": "bg",
    "cat": "ca",
    "ceb": "ceb",
    "ces": "cs",
    "ckb": "ckb",
    "cmn": "zh",
    "cmn_Hant": "zh-hant",
    "cym": "cy",
    "dan": "da",
    "deu": "de",
    "ell": "el",
    "eng": "en",
    "est": "et",
    "eus": "eu",
    "fin": "fi",
    "fra": "fr",
    "fuv": "ff",
    "gaz": "om",
    "gle": "ga",
    "glg": "gl",
    "guj": "gu",
    "heb": "he",
    "hin": "hi",
    "hrv": "hr",
    "hun": "hu",
    "hye": "hy",
    "ibo": "ig",
    "ind": "id",
    "isl": "is",
    "ita": "it",
    "jav": "jv",
    "jpn": "ja",
    "kam": "kam",
    "kan": "kn",
    "kat": "ka",
    "kaz": "kk",
    "kea": "kea",
    "khk": "mn",
    "khm": "km",
    "kir": "ky",
    "kor": "ko",
    "lao": "lo",
    "lit": "lt",
    "ltz": "lb",
    "lug": "lg",
    "luo": "luo",
    "lvs": "lv",
    "mai": "mai",
    "mal": "ml",
    "mar": "mr",
    "mkd": "mk",
    "mlt": "mt",
    "mni": "mni",
    "mya": "my",
    "nld": "nl",
    "nno": "nn",
    "nob": "nb",
    "npi": "ne",
    "nya": "ny",
    "oci": "oc",
    "ory": "or",
    "pan": "pa",
    "pbt": "ps",
    "pes": "fa",
    "pol": "pl",
    "por": "pt",
    "ron": "ro",
    "rus": "ru",
    "sat": "sat",
    "slk": "sk",
    "slv": "sl",
    "sna": "sn",
    "snd": "sd",
    "som": "so",
    "spa": "es",
    "srp": "sr",
    "swe": "sv",
    "swh": "sw",
    "tam": "ta",
    "tel": "te",
    "tgk": "tg",
    "tgl": "tl",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "urd": "ur",
    "uzn": "uz",
    "vie": "vi",
    "xho": "xh",
    "yor": "yo",
    "yue": "yue",
    "zlm": "ms",
    "zsm": "ms",
    "zul": "zu",
}
_KNOWN_SENTENCEX_CODES = frozenset(_SENTENCEX_CODES.values())
_FALLBACK_CODE = "en"


def sentencex_code(lang: str) -> str:
    """The sentencex language code for one of our codes (``fra`` -> ``fr``, ``cmn`` -> ``zh``, ``zsm`` -> ``ms``).

    A code that is already one of sentencex's (``fr``) is returned as is; an unknown code gives ``en``, whose rules
    split on ``. ! ?`` and on the terminators of every script (``。！？ । ؟ ۔ ။ ።`` ...).
    """
    code = _SENTENCEX_CODES.get(lang) or _SENTENCEX_CODES.get(lang.lower())
    if code is not None:
        return code
    if lang.lower() in _KNOWN_SENTENCEX_CODES:
        return lang.lower()
    return _FALLBACK_CODE


# --------------------------------------------------------------------------------------------------- paragraphs

_NEWLINES = str.maketrans({"\r": "\n", "\x85": "\n", "\u2028": "\n", "\x0b": "\n", "\x0c": "\n"})
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_LINE_BREAK = re.compile(r"[^\S\n]*\n\s*")


def _is_cjk(char: str) -> bool:
    """Han, kana and CJK punctuation: the characters that a wrapped line joins without a space (not Hangul)."""
    if "\uac00" <= char <= "\ud7af" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f":
        return False
    return unicodedata.east_asian_width(char) in ("W", "F")


def _unwrap(paragraph: str) -> str:
    """One paragraph on one line: a line break becomes a space, or nothing between two CJK characters."""

    def replace(match: re.Match[str]) -> str:
        before = paragraph[match.start() - 1] if match.start() > 0 else ""
        after = paragraph[match.end()] if match.end() < len(paragraph) else ""
        return "" if before and after and _is_cjk(before) and _is_cjk(after) else " "

    return _LINE_BREAK.sub(replace, paragraph)


def _paragraphs(text: str) -> Iterator[str]:
    """The non-empty paragraphs of ``text``, each unwrapped to one line and stripped."""
    text = text.replace("\r\n", "\n").replace("\u2029", "\n\n").translate(_NEWLINES)
    for block in _PARAGRAPH_BREAK.split(text):
        paragraph = _unwrap(block.strip())
        if paragraph:
            yield paragraph


# ---------------------------------------------------------------------------------------------------- sentences

# Titles and initials that sentencex takes for a sentence end in some languages (fr: "M. Dupont", "Dr. Martin";
# nl: "Mevr."; hi: "डॉ."). Compared case-sensitively with the word before the final dot.
_ABBREVIATIONS = frozenset(
    {
        # French
        "M",
        "MM",
        "Mme",
        "Mmes",
        "Mlle",
        "Mlles",
        "Me",
        "Mgr",
        "Pr",
        "Dr",
        "Drs",
        "St",
        "Ste",
        "janv",
        "févr",
        "avr",
        "juil",
        "déc",
        # English, Spanish, Portuguese, Italian, German, Dutch
        "Mr",
        "Mrs",
        "Ms",
        "Prof",
        "Sr",
        "Sra",
        "Srta",
        "Dra",
        "Sig",
        "Sigg",
        "Dott",
        "Hr",
        "Hrn",
        "Fr",
        "Frl",
        "Dhr",
        "Mevr",
        "Gen",
        "Col",
        "Capt",
        "Lt",
        "Sgt",
        "Rev",
        "Hon",
        # Devanagari
        "डॉ",
        "श्री",
        "श्रीमती",
        "सुश्री",
        "प्रो",
    }
)
_OPENERS = "\"'«‹“‘„‚([{¿¡"
_CLOSING_QUOTES = '」』”’"»)'
# Khmer full stops, which sentencex does not know; "។ល។" is "etc." and ends nothing.
_KHMER_STOP = re.compile(r"(?<!។ល)[។៕](?!ល។)[\s\u200b]*")
# A minimal splitter, used only if sentencex ever returns pieces that do not add up to its input.
_FALLBACK_STOP = re.compile(r"[.!?…。！？｡।॥؟۔။።։]+[\"'”’»」』)]*[\s\u200b]+|[。！？｡]+[”’」』)]*")


def _split_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match of ``pattern`` (the match stays with the piece before); pieces add up to it."""
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if start < match.end() < len(text):
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _starts_upper(piece: str) -> bool:
    return piece.lstrip().lstrip(_OPENERS)[:1].isupper()


def _is_false_break(before: str, after: str, lang: str, cased: bool) -> bool:
    """Whether sentencex's break between two raw pieces is not a sentence end.

    ``cased``: whether the paragraph starts any sentence with a capital; text written all in lower case (chat,
    transcripts) does not have its breaks undone for starting in lower case.
    """
    head = before.rstrip()
    tail = after.lstrip().lstrip(_OPENERS)
    if not head or not tail:
        return True
    if head.endswith(".") and not head.endswith(".."):
        words = head[:-1].split()
        word = words[-1].lstrip(_OPENERS) if words else ""
        # A title, or an initial ("J. K. Rowling", Arabic "د." for doctor).
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return True
    # A sentence does not start in lower case (cased scripts only): "le prof. est", "¿Vienes? dijo él".
    if cased and tail[0].islower():
        return True
    # Burmese "၊" is a comma, which sentencex treats as a full stop.
    if head.endswith("၊"):
        return True
    # Japanese quotation: 「こんにちは。」と彼は言った。
    return lang == "jpn" and head[-1] in _CLOSING_QUOTES and tail.startswith(("と", "って"))


def _raw_sentences(paragraph: str, lang: str) -> list[str]:
    """The sentences of one unwrapped, stripped paragraph, each with its trailing whitespace: they add up to it."""
    if not paragraph:
        return []
    pieces = _segment(sentencex_code(lang), paragraph)
    if "".join(pieces) != paragraph:
        pieces = _split_after(paragraph, _FALLBACK_STOP)
    pieces = [part for piece in pieces for part in _split_after(piece, _KHMER_STOP)]
    cased = any(_starts_upper(piece) for piece in pieces)
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _is_false_break(sentences[-1], piece, lang, cased):
            sentences[-1] += piece
        else:
            sentences.append(piece)
    return sentences


def split_sentences(text: str, lang: str) -> list[str]:
    """The sentences of ``text`` (in language ``lang``, one of our 3-letter codes), stripped, none empty.

    Meant for one paragraph; if ``text`` holds several (blank lines), no sentence spans two of them. Splits on
    Latin ``. ! ? …``, CJK ``。！？``, Devanagari ``। ॥``, Arabic ``؟ ۔``, Armenian ``։``, Ethiopic ``።``, Burmese
    ``။``, Khmer ``។`` and the like; titles and initials (``M. Dupont``, ``Dr. Smith``, ``J. K. Rowling``) do not
    end a sentence, nor does a break followed by a lower-case letter (unless the paragraph is all lower case).
    """
    return [s.strip() for p in _paragraphs(text) for s in _raw_sentences(p, lang) if s.strip()]


# ------------------------------------------------------------------------------------------------------ chunks


@dataclass(frozen=True)
class TextChunk:
    """A piece of the input to translate in one call.

    ``paragraph`` is the index of its paragraph among the non-empty paragraphs of the input (0, 1, 2, ... in
    order); ``text`` holds one or more whole sentences, or a piece of a sentence over the budget, with the
    original spacing between them; ``sentences`` is how many sentences (or sentence pieces) it holds.
    """

    paragraph: int
    text: str
    sentences: int


TokenCounter = Callable[[str], int]

# Where a sentence over the budget may be cut, best first: after clause punctuation, then after whitespace
# (U+200B, the zero-width space, separates words in Thai, Lao, Khmer and Burmese text). Then a character cut.
_SOFT_BREAKS: tuple[re.Pattern[str], ...] = (
    re.compile(r"[,;:،؛፣፤፥፦៖၊‚—–]+[\"'”’»)\]]*[\s\u200b]+|[、，；：﹐﹑﹔﹕︐︑]+[”’」』）]*[\s\u200b]*"),
    re.compile(r"[\s\u200b]+"),
)


@dataclass
class _Unit:
    text: str  # raw: with its trailing whitespace
    starts_chunk: bool = False  # the first piece of a cut sentence does not join the chunk before it


def _pack(units: Sequence[_Unit], count: TokenCounter, max_tokens: int, target: int) -> list[list[_Unit]]:
    """Units grouped greedily, in order: a group grows while it fits ``max_tokens`` and is under ``target``."""
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    current_tokens = 0
    for unit in units:
        if current and not unit.starts_chunk and current_tokens < target:
            tokens = count(("".join(u.text for u in current) + unit.text).strip())
            if tokens <= max_tokens:
                current.append(unit)
                current_tokens = tokens
                continue
        if current:
            groups.append(current)
        current = [unit]
        current_tokens = count(unit.text.strip())
    if current:
        groups.append(current)
    return groups


def _is_continuation(char: str) -> bool:
    """A character that must not start a piece: a combining mark, a joiner, a variation selector."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200c\u200d"


def _inside_cluster(text: str, index: int) -> bool:
    """Whether cutting ``text`` before ``index`` would split a character cluster (Devanagari "स्ते", emoji ZWJ)."""
    if index <= 0 or index >= len(text):
        return False
    before = text[index - 1]
    # After a virama (combining class 9) the next consonant joins the conjunct: Indic scripts, Khmer coeng.
    return _is_continuation(text[index]) or before == "\u200d" or unicodedata.combining(before) == 9


def _hard_cut(text: str, count: TokenCounter, budget: int) -> list[str]:
    """``text`` cut at character boundaries into pieces of at most ``budget`` tokens (at least one character)."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        rest = text[start:]
        # The longest prefix that fits: double a guess until it does not fit, then bisect. Invariant: a prefix of
        # `fits` characters is within the budget (0 trivially), one of `over` characters is not. The counter only
        # ever sees up to twice what fits, never the whole rest of a long run (which would be quadratic).
        fits, size = 0, 16
        while size < len(rest) and count(rest[:size].strip()) <= budget:
            fits, size = size, size * 2
        if size >= len(rest) and count(rest.strip()) <= budget:
            pieces.append(rest)
            break
        over = min(size, len(rest))
        while over - fits > 1:
            middle = (fits + over) // 2
            if count(rest[:middle].strip()) <= budget:
                fits = middle
            else:
                over = middle
        cut = fits
        while _inside_cluster(rest, cut):
            cut -= 1
        if cut == 0:  # not even one character fits: emit one cluster anyway, never loop
            cut = 1
            while _inside_cluster(rest, cut):
                cut += 1
        pieces.append(rest[:cut])
        start += cut
    return pieces


def _split_long(text: str, count: TokenCounter, max_tokens: int, level: int = 0) -> list[str]:
    """A raw sentence over the budget as raw pieces within it, cut at the best places; the pieces add up to it."""
    total = count(text.strip())
    parts = -(-total // max_tokens)  # ceil: the fewest pieces possible
    target = -(-total // parts)  # balanced piece size
    if level >= len(_SOFT_BREAKS):
        return _hard_cut(text, count, target)
    units: list[_Unit] = []
    for atom in _split_after(text, _SOFT_BREAKS[level]):
        if count(atom.strip()) <= max_tokens:
            units.append(_Unit(atom))
        else:
            sub = _split_long(atom, count, max_tokens, level + 1)
            units.extend(_Unit(piece, starts_chunk=index == 0) for index, piece in enumerate(sub))
    return ["".join(u.text for u in group) for group in _pack(units, count, max_tokens, target)]


def chunk_text(text: str, lang: str, *, count_tokens: TokenCounter, max_tokens: int = 128) -> list[TextChunk]:
    """``text`` cut into chunks of whole sentences of at most ``max_tokens`` tokens each, in order.

    ``count_tokens`` measures a string (the model tokenizer's length; anything monotonic-ish works). Paragraphs are
    separated by blank lines and a chunk never spans two; a single line break inside a paragraph is read as a space
    (or as nothing between two CJK characters). Sentences are packed greedily; a sentence over the budget is cut
    after clause punctuation, then at whitespace, then between characters, into balanced pieces within the budget.
    No character but whitespace is lost: the chunks' texts, in order, hold the input's non-space characters.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    chunks: list[TextChunk] = []
    for index, paragraph in enumerate(_paragraphs(text)):
        units: list[_Unit] = []
        for sentence in _raw_sentences(paragraph, lang):
            if count_tokens(sentence.strip()) <= max_tokens:
                units.append(_Unit(sentence))
            else:
                pieces = _split_long(sentence, count_tokens, max_tokens)
                units.extend(_Unit(piece, starts_chunk=i == 0) for i, piece in enumerate(pieces))
        for group in _pack(units, count_tokens, max_tokens, max_tokens):
            chunk = "".join(u.text for u in group).strip()
            if chunk:
                chunks.append(TextChunk(paragraph=index, text=chunk, sentences=len(group)))
    return chunks


# ------------------------------------------------------------------------------------------------------ joining

# A piece that starts with one of these is glued to the text before it, whatever the language.
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}…%、，。；：！？）」』》〉")


def _append(text: str, piece: str, separator: str) -> str:
    if not text:
        return piece
    if piece[0] in _NO_SPACE_BEFORE:
        return text + piece
    if not separator and text[-1].isascii() and text[-1].isalnum() and piece[0].isascii() and piece[0].isalnum():
        return f"{text} {piece}"  # "iPhone" + "Apple" inside Chinese text
    return text + separator + piece


def _join(pieces: Sequence[str], lang: str) -> str:
    separator = sentence_separator(lang)
    text = ""
    for piece in pieces:
        text = _append(text, piece, separator)
    return text


def join_chunks(chunks: Sequence[TextChunk], translations: Sequence[str], tgt_lang: str) -> str:
    """The translations of ``chunks`` (same order, same length) as one text.

    Within a paragraph the pieces are joined with a space, or with nothing for Chinese, Cantonese and Japanese
    (``NO_SENTENCE_SPACE_LANGS``); paragraphs with a blank line. Pieces are stripped; empty ones are skipped, and a
    paragraph left with nothing is dropped (no run of blank lines).
    """
    if len(chunks) != len(translations):
        raise ValueError(f"{len(chunks)} chunks but {len(translations)} translations")
    paragraphs: list[list[str]] = []
    current: int | None = None
    for chunk, translation in zip(chunks, translations, strict=True):
        if chunk.paragraph != current or not paragraphs:
            paragraphs.append([])
            current = chunk.paragraph
        piece = translation.strip()
        if piece:
            paragraphs[-1].append(piece)
    return "\n\n".join(_join(pieces, tgt_lang) for pieces in paragraphs if pieces)


# How much two overlapping audio segments (~0.5 s of shared audio) can both have heard.
_MAX_OVERLAP_WORDS = 6
_MAX_OVERLAP_CHARS = 8
_MIN_OVERLAP_CHARS = 2  # a single repeated character is too often a genuine one
_TAIL_CHARS = 400  # enough text before the join to hold the longest overlap
_TOKEN = re.compile(r"\S+")


def _normalise(text: str) -> str:
    """Case-folded letters, marks and digits only: "End," and "end" compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in folded if unicodedata.category(char)[0] in "LMN")


def _units(text: str, by_char: bool) -> list[tuple[int, int, str]]:
    """(start, end, normalised) for each word (or character) of ``text`` that is more than punctuation."""
    if by_char:
        spans = [(i, i + 1, char) for i, char in enumerate(text)]
    else:
        spans = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    return [(start, end, norm) for start, end, raw in spans if (norm := _normalise(raw))]


def _drop_repeat(before: str, after: str, by_char: bool) -> str:
    """``after`` without the longest run at its start that repeats the end of ``before``."""
    tail = before[-_TAIL_CHARS:]
    previous = _units(tail, by_char)
    if len(before) > _TAIL_CHARS and not by_char and previous:
        previous = previous[1:]  # the first word of the tail may be cut
    limit, least = (_MAX_OVERLAP_CHARS, _MIN_OVERLAP_CHARS) if by_char else (_MAX_OVERLAP_WORDS, 1)
    previous = previous[-limit:]
    following = _units(after, by_char)[:limit]
    for size in range(min(len(previous), len(following)), least - 1, -1):
        if [n for _, _, n in previous[-size:]] != [n for _, _, n in following[:size]]:
            continue
        cut = following[size - 1][1]
        if _inside_cluster(after, cut):
            continue  # the match ends inside a character cluster: not a real repeat
        rest = after[cut:].strip()
        if before.rstrip() and unicodedata.category(before.rstrip()[-1]).startswith("P"):
            # "你好，" + "你好，朋友": the punctuation after the repeat is already there.
            while rest and unicodedata.category(rest[0]) in ("Po", "Pd", "Pe", "Pf"):
                rest = rest[1:].lstrip()
        return rest
    return after


def join_segment_texts(texts: Sequence[str], tgt_lang: str, *, overlapped: Sequence[bool] | None = None) -> str:
    """The texts of consecutive audio segments as one text.

    Joined with a space, or with nothing for Chinese, Cantonese and Japanese. ``overlapped[i]`` (one flag per gap,
    ``len(texts) - 1`` of them; a last flag for the text after the end is accepted and ignored) says that segment
    ``i`` and ``i + 1`` share ~0.5 s of audio: then the longest run of words at the start of text ``i + 1`` that
    repeats the end of the text so far is removed (words compared case-folded without punctuation, at most 6; for
    ``NO_SPACE_LANGS`` characters, 2 to 8). Nothing is removed across a gap that is not overlapped, or after an
    empty text.
    """
    if overlapped is None:
        overlapped = [False] * max(len(texts) - 1, 0)
    if len(overlapped) not in (len(texts) - 1, len(texts)):
        raise ValueError(f"{len(texts)} texts need {len(texts) - 1} overlap flags, got {len(overlapped)}")
    by_char = tgt_lang in NO_SPACE_LANGS
    separator = sentence_separator(tgt_lang)
    joined = ""
    previous_heard = False  # whether the text before this one was non-empty
    for index, raw in enumerate(texts):
        text = raw.strip()
        if text and index > 0 and previous_heard and overlapped[index - 1] and joined:
            text = _drop_repeat(joined, text, by_char)
        previous_heard = bool(raw.strip())
        if text:
            joined = _append(joined, text, separator)
    return joined
