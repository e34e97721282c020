"""Tests of worker/text_chunks.py: sentence splitting, chunking under a token budget and joining translations back.

The token counters are stand-ins for the model tokenizer: words for French and Hindi, characters for Chinese.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Callable

import pytest

from shared.languages import LANGUAGE_NAMES
from worker.text_chunks import (
    NO_SENTENCE_SPACE_LANGS,
    NO_SPACE_LANGS,
    TextChunk,
    chunk_text,
    join_chunks,
    join_segment_texts,
    sentencex_code,
    split_sentences,
)

FRENCH = [
    [
        "Le soleil se levait lentement sur la petite ville endormie.",
        "Les boulangers avaient déjà allumé leurs fours depuis plusieurs heures.",
        "Une odeur de pain chaud flottait dans les rues étroites.",
        "Marie ouvrit sa fenêtre et respira profondément l'air frais du matin.",
        "Elle pensait au long voyage qui l'attendait ce jour-là.",
        "Son frère devait arriver de Lyon par le train de neuf heures.",
        "Ils ne s'étaient pas vus depuis presque trois ans.",
        "Pourquoi avait-il attendu si longtemps avant de revenir ?",
        "Elle n'avait jamais vraiment compris ses raisons.",
        "Aujourd'hui, pourtant, elle était simplement heureuse de le retrouver !",
    ],
    [
        "La gare était pleine de voyageurs pressés et de familles bruyantes.",
        "Un haut-parleur annonçait les retards avec une voix monotone.",
        "Marie acheta un café et s'assit sur un banc près du quai numéro quatre.",
        "Les minutes passaient plus lentement qu'elle ne l'aurait voulu.",
        "Enfin, le train entra en gare dans un grand bruit de freins.",
        "Les portes s'ouvrirent et une foule de passagers descendit sur le quai.",
        "Elle chercha son frère du regard parmi tous ces visages inconnus.",
        "Il portait un vieux manteau gris et un sac à dos usé.",
        "Quand il la vit, il sourit et leva la main.",
        "Ils s'embrassèrent longuement sans dire un seul mot.",
    ],
    [
        "Sur le chemin du retour, ils parlèrent de leurs souvenirs d'enfance.",
        "Il raconta ses années passées à travailler dans une ferme en Bretagne.",
        "Elle lui parla de son nouveau travail à la bibliothèque municipale.",
        "Le soir, ils préparèrent ensemble un repas simple mais délicieux.",
        "La soupe de légumes rappelait celle que faisait leur grand-mère.",
        "Après le dîner, ils sortirent marcher au bord de la rivière.",
        "Les étoiles brillaient au-dessus des arbres silencieux.",
        "Il lui confia qu'il avait décidé de rester pour de bon.",
        "Marie sentit ses yeux se remplir de larmes de joie.",
        "C'était le plus beau jour de l'année.",
    ],
]

CHINESE = [
    [
        "今天早上的天气非常好。",
        "太阳从东边慢慢地升起来了。",
        "小明很早就起床了。",
        "他吃完早饭以后就去学校了。",
        "路上他遇到了他的好朋友小红。",
        "他们一起走路去上学。",
        "你今天有考试吗？",
        "小红笑着问他。",
        "小明说他已经准备好了！",
        "他们很快就到了学校门口。",
    ],
    [
        "第一节课是数学课。",
        "老师在黑板上写了很多题目。",
        "同学们都在认真地做练习。",
        "小明觉得这些题目不太难。",
        "他很快就做完了所有的题目。",
        "老师表扬了他的努力。",
        "下课的时候大家都去操场玩。",
        "有的同学在踢足球。",
        "有的同学在跳绳。",
        "操场上充满了欢笑声。",
    ],
    [
        "下午放学以后，小明去了图书馆。",
        "他想借一本关于历史的书。",
        "图书馆里非常安静。",
        "他找了很久才找到那本书。",
        "借书以后他就回家了。",
        "妈妈已经做好了晚饭。",
        "晚饭有米饭、鱼和青菜。",
        "全家人一起高高兴兴地吃饭。",
        "吃完饭他开始写作业。",
        "这真是忙碌而快乐的一天！",
    ],
]

HINDI = [
    [
        "आज सुबह मौसम बहुत सुहावना था।",
        "सूरज धीरे-धीरे आसमान में ऊपर चढ़ रहा था।",
        "राम जल्दी उठकर बगीचे में टहलने गया।",
        "वहाँ उसने रंग-बिरंगे फूल देखे।",
        "पक्षी पेड़ों पर मीठे गीत गा रहे थे।",
        "क्या तुमने कभी इतनी सुंदर सुबह देखी है?",
        "राम ने अपने छोटे भाई से पूछा।",
        "भाई ने मुस्कुराकर सिर हिलाया।",
        "दोनों भाई देर तक बगीचे में घूमते रहे।",
        "फिर वे नाश्ता करने घर लौट आए।",
    ],
    [
        "नाश्ते में माँ ने गरम पराठे बनाए थे।",
        "पिताजी अख़बार पढ़ रहे थे।",
        "दादी पूजा के कमरे में भजन गा रही थीं।",
        "घर में एक शांत और खुशी का माहौल था।",
        "राम को उस दिन स्कूल जाना था।",
        "उसने अपना बस्ता जल्दी से तैयार किया।",
        "उसकी किताबें मेज़ पर बिखरी हुई थीं।",
        "माँ ने उसे समय पर निकलने के लिए कहा।",
        "वह दौड़कर बस स्टॉप तक पहुँचा।",
        "बस ठीक समय पर आ गई!",
    ],
    [
        "स्कूल में पहला पाठ विज्ञान का था।",
        "शिक्षक ने पौधों के बारे में बताया।",
        "बच्चों ने बहुत सारे सवाल पूछे।",
        "राम को यह विषय बहुत पसंद आया।",
        "दोपहर में सभी ने साथ बैठकर खाना खाया।",
        "खेल के समय में बच्चों ने क्रिकेट खेला।",
        "राम की टीम ने मैच जीत लिया।",
        "शाम को वह थका हुआ लेकिन खुश घर लौटा।",
        "उसने माँ को दिन भर की सारी बातें बताईं।",
        "यह उसके जीवन का एक यादगार दिन था।",
    ],
]

Counter = Callable[[str], int]


def words(text: str) -> int:
    return len(text.split())


def chars(text: str) -> int:
    return len(text)


# lang, paragraphs, token counter, budget, separator between sentences in the source
DOCUMENTS = [
    pytest.param("fra", FRENCH, words, 30, " ", id="fra"),
    pytest.param("cmn", CHINESE, chars, 40, "", id="cmn"),
    pytest.param("hin", HINDI, words, 25, " ", id="hin"),
]


def document(paragraphs: list[list[str]], separator: str) -> str:
    return "\n\n".join(separator.join(sentences) for sentences in paragraphs)


def visible(text: str) -> str:
    """The characters that must survive chunking: everything but whitespace."""
    return "".join(text.split())


# ----------------------------------------------------------------------------------------------- documents


@pytest.mark.parametrize(("lang", "paragraphs", "count", "budget", "separator"), DOCUMENTS)
def test_document_sentences_are_found(
    lang: str, paragraphs: list[list[str]], count: Counter, budget: int, separator: str
) -> None:
    for sentences in paragraphs:
        assert split_sentences(separator.join(sentences), lang) == sentences
    # A whole document: sentences never span a paragraph break.
    assert split_sentences(document(paragraphs, separator), lang) == [s for p in paragraphs for s in p]


@pytest.mark.parametrize(("lang", "paragraphs", "count", "budget", "separator"), DOCUMENTS)
def test_document_chunks_keep_every_sentence(
    lang: str, paragraphs: list[list[str]], count: Counter, budget: int, separator: str
) -> None:
    text = document(paragraphs, separator)
    chunks = chunk_text(text, lang, count_tokens=count, max_tokens=budget)

    assert sum(chunk.sentences for chunk in chunks) == 30
    assert all(count(chunk.text) <= budget for chunk in chunks)
    # Packed: several sentences per chunk, several chunks per paragraph.
    assert len(chunks) > 6
    assert max(chunk.sentences for chunk in chunks) > 1
    # In order, never across a paragraph: each chunk is a run of its own paragraph's sentences.
    assert [chunk.paragraph for chunk in chunks] == sorted(chunk.paragraph for chunk in chunks)
    assert {chunk.paragraph for chunk in chunks} == {0, 1, 2}
    for index, sentences in enumerate(paragraphs):
        mine = [chunk for chunk in chunks if chunk.paragraph == index]
        assert sum(chunk.sentences for chunk in mine) == len(sentences)
        assert separator.join(chunk.text for chunk in mine) == separator.join(sentences)

    # Identity "translations" give the document back: 30 sentences, exactly two paragraph breaks.
    joined = join_chunks(chunks, [chunk.text for chunk in chunks], lang)
    assert joined == text
    assert joined.count("\n\n") == 2
    assert [split_sentences(p, lang) for p in joined.split("\n\n")] == paragraphs


def test_budget_is_met_with_exact_counts() -> None:
    # The budget holds for the text of the whole chunk, not for a sum of per-sentence counts.
    text = document(FRENCH, " ")
    longest = max(words(s) for p in FRENCH for s in p)
    for budget in (5, longest - 1, longest, 20, 45, 200):
        chunks = chunk_text(text, "fra", count_tokens=words, max_tokens=budget)
        assert all(words(chunk.text) <= budget for chunk in chunks)
        assert " ".join(chunk.text for chunk in chunks) == text.replace("\n\n", " ")
        if budget >= longest:
            assert sum(chunk.sentences for chunk in chunks) == 30
        else:  # the longest sentences are cut into pieces, each counted
            assert sum(chunk.sentences for chunk in chunks) > 30
    # A budget of the whole paragraph gives one chunk per paragraph.
    assert [c.sentences for c in chunk_text(text, "fra", count_tokens=words, max_tokens=10_000)] == [10, 10, 10]


def test_large_document_is_fast_and_lossless() -> None:
    paragraph = " ".join(FRENCH[0] + FRENCH[1] + FRENCH[2])
    text = "\n\n".join([paragraph] * 110)  # ~200,000 characters, 3,300 sentences
    assert len(text) > 190_000
    started = time.perf_counter()
    chunks = chunk_text(text, "fra", count_tokens=words, max_tokens=128)
    assert time.perf_counter() - started < 10
    assert sum(chunk.sentences for chunk in chunks) == 3300
    assert len({chunk.paragraph for chunk in chunks}) == 110
    assert visible(join_chunks(chunks, [c.text for c in chunks], "fra")) == visible(text)


# ----------------------------------------------------------------------------------------- long sentences

LATIN_WORDS = ["le", "chat", "noir", "dort", "sur", "un", "vieux", "tapis", "rouge", "pendant", "que", "la", "pluie"]


def long_latin_sentence(length: int = 6000) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < length:
        out.append(LATIN_WORDS[len(out) % len(LATIN_WORDS)])
    return " ".join(out)


def test_long_latin_sentence_is_cut_at_words_within_budget() -> None:
    sentence = long_latin_sentence()
    assert len(sentence) >= 6000
    assert len(split_sentences(sentence, "fra")) == 1

    chunks = chunk_text(sentence, "fra", count_tokens=words, max_tokens=50)
    assert all(words(chunk.text) <= 50 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == sentence
    assert sum(chunk.sentences for chunk in chunks) == len(chunks)
    # Balanced: the fewest pieces possible, none a small leftover.
    assert len(chunks) == math.ceil(words(sentence) / 50)
    assert min(words(chunk.text) for chunk in chunks) >= 25

    # Counted in characters: cut at whitespace only, every piece made of whole words.
    chunks = chunk_text(sentence, "fra", count_tokens=chars, max_tokens=300)
    assert all(len(chunk.text) <= 300 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == sentence
    assert all(set(chunk.text.split()) <= set(LATIN_WORDS) for chunk in chunks)


def test_cut_sentence_starts_a_new_chunk() -> None:
    # The short sentence before a cut one is not glued to its first piece; its last piece may take what follows.
    sentence = long_latin_sentence(1000)
    text = f"Court. {sentence.capitalize()}. Fin."
    chunks = chunk_text(text, "fra", count_tokens=words, max_tokens=60)
    assert chunks[0] == TextChunk(paragraph=0, text="Court.", sentences=1)
    assert chunks[-1].text.endswith(". Fin.")
    assert " ".join(chunk.text for chunk in chunks) == text
    assert all(words(chunk.text) <= 60 for chunk in chunks)


def test_long_sentence_is_cut_after_clause_punctuation_first() -> None:
    clauses = [" ".join(f"mot{i}x{j}" for j in range(10)) for i in range(20)]
    sentence = ", ".join(clauses) + "."
    chunks = chunk_text(sentence, "fra", count_tokens=words, max_tokens=35)
    assert all(words(chunk.text) <= 35 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == sentence
    assert all(chunk.text.endswith(",") for chunk in chunks[:-1])

    # CJK clause marks take no space after them.
    cjk = "，".join("春夏秋冬东南西北" * 2 for _ in range(30)) + "。"
    chunks = chunk_text(cjk, "cmn", count_tokens=chars, max_tokens=60)
    assert all(len(chunk.text) <= 60 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == cjk
    assert all(chunk.text.endswith("，") for chunk in chunks[:-1])


def test_long_cjk_run_is_cut_between_characters() -> None:
    run = ("我们在很久很久以前的一个小村庄里住着一位老人他每天都去河边钓鱼" * 200)[:6000]
    assert len(split_sentences(run, "cmn")) == 1
    chunks = chunk_text(run, "cmn", count_tokens=chars, max_tokens=128)
    assert all(len(chunk.text) <= 128 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == run
    assert len(chunks) == math.ceil(6000 / 128)


def test_hard_cut_never_splits_a_character_from_its_marks() -> None:
    run = "नमस्तेदुनिया" * 500  # Devanagari without spaces: vowel signs and viramas are combining marks
    chunks = chunk_text(run, "hin", count_tokens=chars, max_tokens=101)
    assert all(len(chunk.text) <= 101 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == run
    assert not any(unicodedata.category(chunk.text[0]).startswith("M") for chunk in chunks)
    assert not any(chunk.text.endswith("\N{DEVANAGARI SIGN VIRAMA}") for chunk in chunks)


def test_impossible_budget_still_terminates_and_keeps_everything() -> None:
    # A counter that adds two special tokens: with a budget of 2, even one character is over it.
    chunks = chunk_text("abc déf. Gh!", "fra", count_tokens=lambda s: len(s) + 2, max_tokens=2)
    assert "".join(chunk.text for chunk in chunks) == "abcdéf.Gh!"
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("abc", "fra", count_tokens=chars, max_tokens=0)


# ---------------------------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("fra", "M. Dupont est arrivé hier. Il est content.", ["M. Dupont est arrivé hier.", "Il est content."]),
        (
            "fra",
            "Le Dr. Martin et M. et Mme Durand sont là. Oui.",
            ["Le Dr. Martin et M. et Mme Durand sont là.", "Oui."],
        ),
        ("fra", "J. K. Rowling a écrit un livre. Il est long.", ["J. K. Rowling a écrit un livre.", "Il est long."]),
        (
            "eng",
            "Dr. Smith went to Washington. He met Mr. Jones.",
            ["Dr. Smith went to Washington.", "He met Mr. Jones."],
        ),
        ("eng", "It costs 3.50 dollars. Really?  Yes!", ["It costs 3.50 dollars.", "Really?", "Yes!"]),
        ("cmn", "今天天气很好。我们去公园吧！你觉得怎么样？", ["今天天气很好。", "我们去公园吧！", "你觉得怎么样？"]),
        ("jpn", "「こんにちは。」と彼は言った。次の文です。", ["「こんにちは。」と彼は言った。", "次の文です。"]),
        ("hin", "डॉ. शर्मा आए। क्या वे ठीक हैं? हाँ।", ["डॉ. शर्मा आए।", "क्या वे ठीक हैं?", "हाँ।"]),
        ("arb", "هذه جملة. هل هذه جملة؟ نعم!", ["هذه جملة.", "هل هذه جملة؟", "نعم!"]),
        ("urd", "یہ ایک جملہ ہے۔ کیا یہ جملہ ہے؟", ["یہ ایک جملہ ہے۔", "کیا یہ جملہ ہے؟"]),
        ("khm", "នេះជាប្រយោគ។ នេះជាប្រយោគមួយទៀត។", ["នេះជាប្រយោគ។", "នេះជាប្រយោគមួយទៀត។"]),
        ("mya", "ဒါက စာကြောင်းပါ၊ ဒါလည်းပါ။ နောက်တစ်ကြောင်းပါ။", ["ဒါက စာကြောင်းပါ၊ ဒါလည်းပါ။", "နောက်တစ်ကြောင်းပါ။"]),
        (
            "rus",
            "А. С. Пушкин родился в Москве. Он писал стихи.",
            ["А. С. Пушкин родился в Москве.", "Он писал стихи."],
        ),
        # Armenian: "։" (or ":" typed for it) ends a sentence, "." does not.
        ("hye", "Սա նախադասություն է։ Սա մեկ այլ է: Վերջ։", ["Սա նախադասություն է։", "Սա մեկ այլ է:", "Վերջ։"]),
        # sentencex breaks before a lower-case word after "prof.", "bd." or "¿...?": not a sentence start.
        ("fra", "Le prof. est arrivé en retard. Oui.", ["Le prof. est arrivé en retard.", "Oui."]),
        ("fra", "Elle vit au bd. de la Gare. Oui.", ["Elle vit au bd. de la Gare.", "Oui."]),
        ("spa", "¿Vienes? dijo él. Sí.", ["¿Vienes? dijo él.", "Sí."]),
        # ... unless nothing in the paragraph starts in upper case.
        ("eng", "hello there. how are you? fine.", ["hello there.", "how are you?", "fine."]),
        ("fra", "   ", []),
        ("fra", "", []),
    ],
)
def test_split_sentences(lang: str, text: str, expected: list[str]) -> None:
    assert split_sentences(text, lang) == expected


@pytest.mark.parametrize("lang", sorted(set(LANGUAGE_NAMES) - {"hye"}))
def test_every_language_splits_on_full_stops(lang: str) -> None:
    assert split_sentences("Alpha beta. Gamma delta? Epsilon zeta!", lang) == [
        "Alpha beta.",
        "Gamma delta?",
        "Epsilon zeta!",
    ]


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("fra", "fr"),
        ("eng", "en"),
        ("cmn", "zh"),
        ("cmn_Hant", "zh-hant"),
        ("arb", "ar"),
        ("pes", "fa"),
        ("zlm", "ms"),
        ("zsm", "ms"),
        ("khk", "mn"),
        ("npi", "ne"),
        ("hin", "hi"),
        ("jpn", "ja"),
        ("fr", "fr"),
        ("qqq", "en"),
        ("", "en"),
    ],
)
def test_sentencex_code(lang: str, code: str) -> None:
    assert sentencex_code(lang) == code


def test_no_space_languages() -> None:
    assert {"cmn", "cmn_Hant", "yue", "jpn", "tha", "lao", "khm", "mya"} == NO_SPACE_LANGS
    assert NO_SENTENCE_SPACE_LANGS < NO_SPACE_LANGS
    assert "kor" not in NO_SPACE_LANGS
    assert NO_SPACE_LANGS.issubset(LANGUAGE_NAMES)


# -------------------------------------------------------------------------------------- paragraphs, lines


def test_empty_and_blank_input() -> None:
    assert chunk_text("", "fra", count_tokens=words) == []
    assert chunk_text(" \n\n \t\n", "fra", count_tokens=words) == []
    assert join_chunks([], [], "fra") == ""


def test_paragraphs_and_line_breaks() -> None:
    text = "\n\n\nLigne un\nligne deux.  Phrase trois.\r\n \r\n\r\n\n Deuxième paragraphe.\n\n  \n"
    chunks = chunk_text(text, "fra", count_tokens=words, max_tokens=100)
    assert chunks == [
        TextChunk(paragraph=0, text="Ligne un ligne deux.  Phrase trois.", sentences=2),
        TextChunk(paragraph=1, text="Deuxième paragraphe.", sentences=1),
    ]
    # Hard-wrapped Chinese is unwrapped without a space; Korean (spaces between words) with one.
    assert chunk_text("第一行\n第二行。", "cmn", count_tokens=chars)[0].text == "第一行第二行。"
    assert chunk_text("첫 번째 줄\n두 번째 줄.", "kor", count_tokens=chars)[0].text == "첫 번째 줄 두 번째 줄."


# --------------------------------------------------------------------------------------------------- joining


def test_join_chunks_spacing_per_language() -> None:
    chunks = [TextChunk(0, "a", 1), TextChunk(0, "b", 1), TextChunk(0, "c", 1), TextChunk(1, "d", 1)]
    assert join_chunks(chunks, ["Bonjour.", "", " Au revoir. ", "Fin."], "fra") == "Bonjour. Au revoir.\n\nFin."
    assert join_chunks(chunks, ["你好。", " ", "再见。", "完。"], "cmn") == "你好。再见。\n\n完。"
    assert join_chunks(chunks, ["こんにちは。", "はい。", "", "終わり。"], "jpn") == "こんにちは。はい。\n\n終わり。"
    # Thai puts a space between sentences, although not between words.
    assert join_chunks(chunks, ["สวัสดีครับ", "ผมชื่อสมชาย", "", "จบ"], "tha") == "สวัสดีครับ ผมชื่อสมชาย\n\nจบ"
    # A paragraph whose translations are all empty leaves no extra blank lines.
    assert join_chunks(chunks, ["", " ", "", "Fin."], "fra") == "Fin."
    # Latin words meeting inside Chinese text keep a space.
    assert join_chunks(chunks[:2], ["我用iPhone", "Apple很好。"], "cmn") == "我用iPhone Apple很好。"
    with pytest.raises(ValueError, match="translations"):
        join_chunks(chunks, ["a"], "fra")


def test_join_segment_texts_removes_overlap_only_when_overlapped() -> None:
    texts = ["We stayed there at the end", "the end of the day we left"]
    assert join_segment_texts(texts, "eng", overlapped=[True]) == "We stayed there at the end of the day we left"
    assert (
        join_segment_texts(texts, "eng", overlapped=[False]) == "We stayed there at the end the end of the day we left"
    )
    assert join_segment_texts(texts, "eng") == "We stayed there at the end the end of the day we left"
    # Case and punctuation do not matter; the longest repeat goes.
    assert (
        join_segment_texts(["He said: Hello, World!", "hello world, how are you?"], "eng", overlapped=[True])
        == "He said: Hello, World! how are you?"
    )
    # No repeat, nothing removed; empty texts skipped without double spaces.
    assert (
        join_segment_texts(["I see", " ", "you there", ""], "eng", overlapped=[True, True, True]) == "I see you there"
    )
    # Nothing is removed across an empty segment.
    assert (
        join_segment_texts(["the end", "", "the end again"], "eng", overlapped=[True, True]) == "the end the end again"
    )
    # At most six words are compared.
    seven = "one two three four five six seven"
    assert join_segment_texts([seven, seven + " eight"], "eng", overlapped=[True]).endswith(
        seven + " " + seven + " eight"
    )
    with pytest.raises(ValueError, match="overlap flags"):
        join_segment_texts(["a", "b", "c"], "eng", overlapped=[True])


def test_join_segment_texts_chinese_compares_characters() -> None:
    texts = ["我们今天下午去公园", "去公园散步然后回家。"]
    assert join_segment_texts(texts, "cmn", overlapped=[True]) == "我们今天下午去公园散步然后回家。"
    assert join_segment_texts(texts, "cmn", overlapped=[False]) == "我们今天下午去公园去公园散步然后回家。"
    # A single repeated character may be genuine: kept.
    assert join_segment_texts(["我们去公园", "园子很大"], "cmn", overlapped=[True]) == "我们去公园园子很大"
    # Punctuation is ignored when comparing, and stays where it was.
    assert join_segment_texts(["他说：你好，", "你好，朋友"], "cmn", overlapped=[True]) == "他说：你好，朋友"
    assert join_segment_texts([], "cmn") == ""
