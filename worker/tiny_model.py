"""A tiny, randomly initialised SeamlessM4T v2 checkpoint for tests and demos, built offline.

``build_tiny_model`` writes a folder that loads through exactly the same calls as the real checkpoint
(``SeamlessM4Tv2Model.from_pretrained(folder)``, ``AutoProcessor.from_pretrained(folder)``) and serves all
four tasks (T2TT, S2TT, T2ST, S2ST) through one ``SeamlessM4Tv2Model``. ITS OUTPUTS ARE NOISE: it exists so
that the service can be built, tested and demonstrated without downloading 9 GB of CC-BY-NC weights.

Kept from the real checkpoint (facebook/seamless-m4t-v2-large):

- the generation config's tables, with the real codes, laid out as transformers'
  ``seamless_m4t_v2/convert_fairseq2_to_hf.py`` does: ``text_decoder_lang_to_code_id`` (98 codes -> ids of
  the tokenizer's ``__xxx__`` tokens), ``t2u_lang_code_to_id`` (38 codes, placed after the units),
  ``vocoder_lang_code_to_id`` (36 codes -> 0..35), ``id_to_text`` (every token id) and ``char_to_id``;
- the token layout <pad>/<unk>/<s>/</s> = 0/1/2/3, then the pieces, then one ``__xxx__`` token per language;
- the unit layout: 4 control symbols, the units (``vocoder_offset`` 4), <mask>, 38 spare ids, the
  38 language ids and one more id (10000 units give the real 10082; here 1000 units give 1082);
- 160 input features per speech frame, the adaptor's 8x subsampling, 4096 positions, and the vocoder's
  upsampling (5, 4, 4, 2, 2): 320 samples per unit, 16 kHz output;
- the vocoder's 200 speakers (``speaker_id`` 0..199) and 36 languages.

Tiny: hidden size 64; 2 text-encoder, 2 text-decoder and 2 speech-encoder layers; 4 heads; FFN 128;
1 + 1 text-to-unit layers; a small vocoder (32 channels; unit/language/speaker embeddings of 32/8/8);
a sentencepiece BPE vocabulary (4000 pieces, 4099 tokens) trained here on a generated corpus that has every
letter of the scripts of the 98 text languages (but only ~430 common Chinese characters and ~230 Korean
syllables). 1.24 M parameters, a 5.4 MB folder, under a second to build (after the imports).

What keeps random weights well behaved:

- the text encoder (std 0.3), speech encoder (0.1) and text decoder (0.7) are re-initialised: with the
  default std 0.02 every input gives the same output;
- channel 0 of the final layer norm of the text decoder and of the text-to-unit decoder is a constant, which
  gives chosen rows of the (bias-free) output heads a large negative logit: the text decoder never emits
  <pad>, <s>, </s>, <unk> or a language token (so it never stops early and never puts a <pad> mid-sequence,
  which would crash the text-to-unit step); the unit head never emits a control symbol, <mask> or a
  language id (the vocoder could not embed them: IndexError);
- the text-to-unit duration predictor gives about 1 unit (20 ms) per character, the vocoder's 1 frame per
  unit: 30 new tokens make about 1-4 s of audio.

Random weights never stop by themselves: always pass ``max_new_tokens`` (at least 2 for speech output, as
with the real model an empty text crashes the duration predictor).
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from transformers import (
    SeamlessM4TFeatureExtractor,
    SeamlessM4TProcessor,
    SeamlessM4TTokenizer,
    SeamlessM4Tv2Config,
    SeamlessM4Tv2Model,
)

from shared.languages import CHECKPOINT_T2U_LANGS, CHECKPOINT_TEXT_LANGS, CHECKPOINT_VOCODER_LANGS

logger = logging.getLogger(__name__)

TINY_MODEL_ID = "tiny"
# Bump when anything below changes what gets built: ensure_tiny_model then builds a fresh folder.
TINY_RECIPE_VERSION = 1
TINY_MODEL_DIRNAME = f"seamless-m4t-v2-tiny-v{TINY_RECIPE_VERSION}"

SPM_VOCAB_SIZE = 4000
HIDDEN_SIZE = 64
NUM_UNITS = 1000
# Real layout (convert_fairseq2_to_hf.py): <s> <pad> </s> <unk>, the units, <mask>, 38 ids left unused,
# then the 38 text-to-unit languages and one spare id: 10000 units give the real t2u vocabulary of 10082.
VOCODER_OFFSET = 4
T2U_LANG_OFFSET = NUM_UNITS + 5 + len(CHECKPOINT_T2U_LANGS)
T2U_VOCAB_SIZE = T2U_LANG_OFFSET + len(CHECKPOINT_T2U_LANGS) + 1
VOCODER_NUM_SPEAKERS = 200

INIT_STD = {"shared": 0.3, "text_encoder": 0.3, "speech_encoder": 0.1, "text_decoder": 0.7}
SUPPRESSED_LOGIT = -40.0
_CONSTANT_CHANNEL = 10.0
T2U_UNITS_PER_CHAR = 1.0
_CHAR_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")

_BUILD_LOCK = threading.Lock()
_NOISE_WARNING = "the tiny SeamlessM4T v2 model has random weights: its outputs (text and speech) are noise"

# Common words of a few languages per script, so that the tokenizer learns real multi-character pieces.
_WORDS: dict[str, str] = {
    "eng": (
        "the of and to in is you that it he was for on are as with his they at be this from have or by one "
        "had not but what all were when we there can an your which their said if do will each about how up "
        "out them then she many some so these would other into has more her two like him see time could no "
        "make than first been its who now people my made over did down only way find use may water long "
        "little very after words called just where most know get through back much go good new write our me "
        "man too any day same right look think also around another came come work three word must because "
        "does part even place well such here take why things help put years different away again off went "
        "old number great tell men say small every found still between name should home big give air line "
        "hello world weather today translation speech text morning thank please friend question answer"
    ),
    "fra": (
        "le la les de des un une et est en que qui dans pour pas sur au aux avec il elle nous vous ils ce "
        "cette ces mais ou donc très être avoir faire dire aller voir savoir pouvoir vouloir venir temps "
        "année jour monde vie homme femme enfant main ville pays maison eau école travail été déjà après où "
        "là à ça français bonjour merci beaucoup aujourd'hui garçon fenêtre forêt naïf Noël cœur même "
        "chose rien toujours encore peut-être bientôt gâteau hôpital élève"
    ),
    "deu": (
        "der die das und ist nicht ein eine zu den mit sich des auf für im dem von sie er es ich wir ihr "
        "auch als an nach wie aus bei noch nur oder aber vor zur bis mehr durch man über sehr heute Tag "
        "Jahr Zeit Welt Haus Kind Frau Mann Stadt Straße groß klein schön gut danke bitte Grüße Mädchen "
        "Übersetzung Wasser Brücke fünf schließlich"
    ),
    "spa": (
        "el la los las de del que y en un una es por con no para se lo como más pero sus le ya o este sí "
        "porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante "
        "hola mundo gracias mañana niño año señor corazón canción información después aquí allí fácil "
        "¿qué ¡hola"
    ),
    "por": (
        "o a os as de do da em um uma que e é não para com por mais como mas foi ao ele ela seu sua ou "
        "quando muito nos já está também só pelo pela até isso entre depois sem mesmo aos ter seus quem "
        "olá obrigado coração ação informação você não São João irmã"
    ),
    "ita": (
        "il lo la i gli le di a da in con su per tra fra e è che non un una sono come più anche ma perché "
        "quando molto bene ciao grazie città perché così però già giù caffè"
    ),
    "nld": "de het een en van in is dat op te zijn niet met voor hij zij wij ook als aan maar dank",
    "pol": (
        "i w nie na się z do to że jest jak o co ale po tak za od jego już tylko przez dzień dobry dziękuję "
        "proszę cześć jeszcze może bardzo źródło łódź żółć ściana"
    ),
    "ces": "a v se na je že to s z o do jak ale dobrý den děkuji prosím čeština řeka šťastný žena",
    "tur": "ve bir bu da ne için çok ben sen o var yok merhaba teşekkür ederim güzel İstanbul ağaç şehir",
    "vie": (
        "và của là có không người những trong một được cho này với các đã để khi đến nhiều xin chào cảm ơn "
        "Việt Nam tiếng thế giới hôm nay trời đẹp"
    ),
    "swh": "na ya wa kwa ni za katika hii la kuwa habari jambo asante sana rafiki chakula maji nyumba leo",
    "ind": "yang dan di itu dengan untuk tidak ini dari dalam akan selamat pagi terima kasih dunia hari",
    "rus": (
        "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год от "
        "так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже "
        "привет мир спасибо пожалуйста сегодня погода хорошо утро вечер ёжик объём"
    ),
    "ukr": "і в не на що я з він це як але та до ти ми привіт дякую будь ласка сьогодні їжак ґанок єдність",
    "ell": "και το να η του ο τα της με που είναι για γεια σου κόσμε ευχαριστώ σήμερα καλημέρα",
    "arb": (
        "في من على إلى أن عن مع هذا هذه التي الذي كان قد لا ما هو هي كل بعد قبل بين مرحبا بالعالم كيف حالك "
        "شكرا اليوم الطقس جميل صباح الخير مساء العربية"
    ),
    "pes": "و در به از که این را با است برای آن یک سلام دنیا ممنون امروز هوا خوب پدر گل ژاله",
    "urd": "اور کے میں کی ہے سے کو نے یہ وہ ایک کا ہیں سلام دنیا شکریہ آج موسم اچھا ہے پاکستان",
    "heb": "של את על לא זה הוא היא אני אתה שלום עולם תודה היום מזג אוויר טוב בוקר",
    "hin": (
        "के का एक में की है यह और से हैं को पर इस होता कि जो कर मे गया करने किया लिये अपने ने बनी नहीं "
        "तो ही या एवं दिया हो इसका था द्वारा हुआ तक साथ करना वाले बाद लिए आप कुछ सकते किसी ये इसके सबसे "
        "नमस्ते दुनिया आप कैसे हैं धन्यवाद आज मौसम अच्छा है भारत हिंदी"
    ),
    "ben": "এবং একটি এই করে তার থেকে হয় না কি আমি তুমি নমস্কার পৃথিবী ধন্যবাদ আজ আবহাওয়া ভালো বাংলা",
    "tam": "ஒரு மற்றும் இந்த என்று அது நான் நீ வணக்கம் உலகம் நன்றி இன்று தமிழ்",
    "tel": "ఒక మరియు ఈ అని అది నేను నువ్వు నమస్కారం ప్రపంచం ధన్యవాదాలు ఈరోజు తెలుగు",
    "tha": "ที่ และ ของ ใน เป็น มี ไม่ ได้ จะ ให้ สวัสดี ครับ ค่ะ ขอบคุณ โลก วันนี้ อากาศ ดี ภาษาไทย",
    "kor": "이 그 저 것 수 나 우리 안녕하세요 세계 감사합니다 오늘 날씨 좋아요 한국어 사람 시간 학교 친구",
    "jpn": "の に は を た が で て と し こんにちは 世界 ありがとう 今日 天気 です ます 日本語 カタカナ",
    "cmn": (
        "你好 世界 我们 中国 人 今天 天气 很好 谢谢 再见 朋友 学生 老师 时间 问题 工作 生活 语言 翻译 "
        "北京 上海 可以 没有 知道 什么 这个 那个 现在 已经"
    ),
    "kat": "და არის ეს რომ არ გამარჯობა მსოფლიო მადლობა დღეს ქართული",
    "hye": "և է որ այս մի բարև աշխարհ շնորհակալություն այսօր հայերեն",
    "amh": "እና ነው ይህ በ ላይ ሰላም ዓለም አመሰግናለሁ ዛሬ አማርኛ",
}

# Common Chinese characters (simplified, then a few traditional ones for cmn_Hant and yue).
_CJK_CHARS = (
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用"
    "道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日军"
    "者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相见"
    "被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真"
    "论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直"
    "德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记"
    "南品住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持"
    "组每济车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团集百需"
    "價國說時個們來對後會們這學書門電話語問題謝見"
)

_PUNCTUATION = ".,!?;:'\"()-%/ 0123456789，。！？、：；「」（）《》،؟।॥۔։"

# Letter ranges of the scripts of the checkpoint's 98 text languages (only letters and marks are kept).
_SCRIPT_RANGES: tuple[tuple[int, int], ...] = (
    (0x0041, 0x005A),  # Latin
    (0x0061, 0x007A),
    (0x00C0, 0x00FF),  # Latin-1
    (0x0100, 0x017F),  # Latin Extended-A
    (0x1EA0, 0x1EF9),  # Vietnamese
    (0x0386, 0x03CE),  # Greek
    (0x0400, 0x045F),  # Cyrillic
    (0x0531, 0x0587),  # Armenian
    (0x05D0, 0x05EA),  # Hebrew
    (0x0621, 0x064A),  # Arabic
    (0x0670, 0x06D3),  # Arabic (Persian, Urdu, Pashto, Sindhi, Kurdish letters)
    (0x0900, 0x097F),  # Devanagari
    (0x0980, 0x09FF),  # Bengali
    (0x0A00, 0x0A7F),  # Gurmukhi
    (0x0A80, 0x0AFF),  # Gujarati
    (0x0B00, 0x0B7F),  # Oriya
    (0x0B80, 0x0BFF),  # Tamil
    (0x0C00, 0x0C7F),  # Telugu
    (0x0C80, 0x0CFF),  # Kannada
    (0x0D00, 0x0D7F),  # Malayalam
    (0x0E01, 0x0E5B),  # Thai
    (0x0E81, 0x0EDF),  # Lao
    (0x1000, 0x104F),  # Myanmar
    (0x10D0, 0x10FA),  # Georgian
    (0x1200, 0x135A),  # Ethiopic
    (0x1780, 0x17DD),  # Khmer
    (0x1C50, 0x1C7F),  # Ol Chiki
    (0x3041, 0x3096),  # Hiragana
    (0x30A1, 0x30FA),  # Katakana
)
# Letters outside those ranges: African Latin (Yoruba, Igbo, Fulfulde, Hausa...), Cyrillic of Central Asia.
_EXTRA_LETTERS = "ɓɗƙƴɛɔǝəƒǎǐǒǔẹọṣịụṅḍḥṭṛṇṃҐґҒғҚқҢңҮүҰұҺһӘәӨөӮӯҶҷҲҳӢӣҸҹ"
# Korean: the syllables of every initial with six vowels, without and with a final n.
_HANGUL_VOWELS = (0, 4, 8, 13, 18, 20)
_HANGUL_FINALS = (0, 4)


def _script_letters() -> list[str]:
    letters: list[str] = []
    for start, end in _SCRIPT_RANGES:
        for code in range(start, end + 1):
            char = chr(code)
            if unicodedata.category(char)[0] in "LM" and unicodedata.normalize("NFKC", char) == char:
                letters.append(char)
    letters.extend(_EXTRA_LETTERS)
    for initial in range(19):
        for vowel in _HANGUL_VOWELS:
            for final in _HANGUL_FINALS:
                letters.append(chr(0xAC00 + (initial * 21 + vowel) * 28 + final))
    letters.extend(dict.fromkeys(_CJK_CHARS))
    return letters


def _corpus(seed: int) -> list[str]:
    """A deterministic multilingual corpus: sentences of common words, then every letter of every script."""
    rng = random.Random(seed)
    lines: list[str] = []
    no_spaces = {"cmn", "jpn", "tha"}
    for lang, words_text in _WORDS.items():
        words = words_text.split()
        for _ in range(40):
            picked = [rng.choice(words) for _ in range(rng.randint(3, 10))]
            sentence = ("" if lang in no_spaces else " ").join(picked)
            lines.append(sentence + rng.choice([".", "?", "!", ",", "", "。" if lang in no_spaces else ""]))
    letters = _script_letters()
    # Every letter at least once, in pseudo-words of its own script (BPE does not merge across scripts).
    for start in range(0, len(letters), 8):
        lines.append(" ".join(letters[start : start + 8]) + " " + "".join(letters[start : start + 8]))
    for _ in range(200):
        lines.append(" ".join("".join(rng.choices(letters, k=rng.randint(1, 3))) for _ in range(6)))
    lines.append(" ".join(_PUNCTUATION))
    for _ in range(50):
        lines.append(f"{rng.randint(0, 99999)} {rng.choice(_PUNCTUATION)} {rng.randint(0, 999)}")
    return lines


def _train_sentencepiece(seed: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed)),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        character_coverage=1.0,
        hard_vocab_limit=False,
        # The tokenizer of transformers 5 builds its BPE with byte_fallback=False: byte pieces would be dead.
        byte_fallback=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def _build_tokenizer(work_dir: Path, seed: int) -> Any:
    spm_dir = work_dir / "spm"
    spm_dir.mkdir()
    (spm_dir / "sentencepiece.bpe.model").write_bytes(_train_sentencepiece(seed))
    # SeamlessM4TTokenizer(vocab_file=...) gives an EMPTY vocabulary in transformers 5: load from a folder.
    tokenizer = SeamlessM4TTokenizer.from_pretrained(
        str(spm_dir), additional_special_tokens=[f"__{code}__" for code in CHECKPOINT_TEXT_LANGS]
    )
    expected = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    actual = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if actual != expected:
        raise RuntimeError(f"unexpected special token ids in the tiny tokenizer: {actual}")
    return tokenizer


def _config(vocab_size: int, char_vocab_size: int) -> Any:
    return SeamlessM4Tv2Config(
        vocab_size=vocab_size,
        t2u_vocab_size=T2U_VOCAB_SIZE,
        char_vocab_size=char_vocab_size,
        hidden_size=HIDDEN_SIZE,
        encoder_layers=2,
        encoder_ffn_dim=128,
        encoder_attention_heads=4,
        decoder_layers=2,
        decoder_ffn_dim=128,
        decoder_attention_heads=4,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        speech_encoder_layers=2,
        speech_encoder_attention_heads=4,
        speech_encoder_intermediate_size=128,
        speech_encoder_layerdrop=0.0,
        feature_projection_input_dim=160,
        t2u_encoder_layers=1,
        t2u_decoder_layers=1,
        t2u_encoder_ffn_dim=128,
        t2u_decoder_ffn_dim=128,
        t2u_encoder_attention_heads=4,
        t2u_decoder_attention_heads=4,
        # Must equal hidden_size: the duration predictor reads the decoder's hidden states.
        t2u_variance_predictor_embed_dim=HIDDEN_SIZE,
        t2u_variance_predictor_hidden_dim=32,
        unit_hifi_gan_vocab_size=NUM_UNITS,
        unit_embed_dim=32,
        lang_embed_dim=8,
        spkr_embed_dim=8,
        upsample_initial_channel=32,
        vocoder_num_langs=len(CHECKPOINT_VOCODER_LANGS),
        vocoder_num_spkrs=VOCODER_NUM_SPEAKERS,
        vocoder_offset=VOCODER_OFFSET,
    )


def _suppress_rows(layer_norm: torch.nn.LayerNorm, head: torch.Tensor, rows: list[int]) -> None:
    """Give ``rows`` of an output head (no bias) a large negative logit whatever the input.

    Channel 0 of the final layer norm becomes the constant ``_CONSTANT_CHANNEL``; the head reads nothing from
    it for the other rows and ``SUPPRESSED_LOGIT / _CONSTANT_CHANNEL`` for ``rows``. The rest of those rows is
    left alone: where the head is tied to an input embedding, the tokens stay distinct as inputs.
    """
    layer_norm.weight[0] = 0.0
    layer_norm.bias[0] = _CONSTANT_CHANNEL
    head[:, 0] = 0.0
    head[rows, 0] = SUPPRESSED_LOGIT / _CONSTANT_CHANNEL


def _initialise(model: Any, tokenizer: Any, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Larger weights in the encoders and the text decoder make outputs depend on the input.
        shared = model.shared.weight
        shared.copy_(torch.randn(shared.shape, generator=generator) * INIT_STD["shared"])
        for part_name in ("text_encoder", "speech_encoder", "text_decoder"):
            for name, param in sorted(getattr(model, part_name).named_parameters()):
                if param.dim() >= 2 and "embed_tokens" not in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * INIT_STD[part_name])
        # Text: never <pad>, <s>, </s>, <unk> or a language token (tied: the shared embedding is the head).
        lang_ids = tokenizer.convert_tokens_to_ids([f"__{code}__" for code in CHECKPOINT_TEXT_LANGS])
        _suppress_rows(model.text_decoder.layer_norm, shared, [0, 1, 2, 3, *lang_ids])
        # Units: only ids the vocoder can embed (tied: the t2u decoder's unused token embedding is the head).
        unit_ids = range(VOCODER_OFFSET, VOCODER_OFFSET + NUM_UNITS)
        unit_rows = [i for i in range(T2U_VOCAB_SIZE) if i not in unit_ids]
        t2u_decoder = model.t2u_model.model.decoder
        _suppress_rows(t2u_decoder.layer_norm, model.t2u_model.lm_head.weight, unit_rows)
        # Durations: about T2U_UNITS_PER_CHAR units per character, one vocoder frame per unit.
        t2u_duration = t2u_decoder.duration_predictor.proj
        t2u_duration.weight.mul_(0.5)
        t2u_duration.bias.fill_(math.log1p(T2U_UNITS_PER_CHAR))
        vocoder_duration = model.vocoder.dur_predictor.proj
        vocoder_duration.weight.mul_(0.5)
        vocoder_duration.bias.fill_(0.0)


def _generation_tables(tokenizer: Any) -> dict[str, Any]:
    """The language and character tables, laid out like the real checkpoint's generation config."""
    id_to_text = {str(i): tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))}
    chars = sorted({ch for token in id_to_text.values() if token not in _CHAR_SPECIALS for ch in token})
    char_to_id = {token: i for i, token in enumerate(_CHAR_SPECIALS)}
    for ch in chars:
        char_to_id.setdefault(ch, len(char_to_id))
    return {
        "text_decoder_lang_to_code_id": {
            code: tokenizer.convert_tokens_to_ids(f"__{code}__") for code in CHECKPOINT_TEXT_LANGS
        },
        "t2u_lang_code_to_id": {code: T2U_LANG_OFFSET + i for i, code in enumerate(CHECKPOINT_T2U_LANGS)},
        "vocoder_lang_code_to_id": {code: i for i, code in enumerate(CHECKPOINT_VOCODER_LANGS)},
        "id_to_text": id_to_text,
        "char_to_id": char_to_id,
    }


def _write_checkpoint(out_dir: Path, seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-m4t-tokenizer-") as work:
        tokenizer = _build_tokenizer(Path(work), seed)
        spm_bytes = (Path(work) / "spm" / "sentencepiece.bpe.model").read_bytes()
    tables = _generation_tables(tokenizer)

    # The model's initialisation draws from torch's global generator: seed it, and give the caller its
    # state back afterwards. The lock keeps two threads of one process from drawing from it at once.
    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SeamlessM4Tv2Model(_config(len(tokenizer), len(tables["char_to_id"])))
        model.eval()
        _initialise(model, tokenizer, seed)
    for key, value in tables.items():
        setattr(model.generation_config, key, value)
    model.generation_config._from_model_config = False
    model.save_pretrained(out_dir)

    feature_extractor = SeamlessM4TFeatureExtractor(language_code=[f"__{c}__" for c in CHECKPOINT_TEXT_LANGS])
    processor = SeamlessM4TProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    processor.save_pretrained(out_dir)
    # Like the real checkpoint, ship the sentencepiece model next to tokenizer.json.
    if not (out_dir / "sentencepiece.bpe.model").exists():
        (out_dir / "sentencepiece.bpe.model").write_bytes(spm_bytes)


def build_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny checkpoint (model, processor, generation config) into ``out_dir`` and return it.

    Offline and deterministic: the same seed gives byte-identical files.
    """
    out_dir = Path(out_dir)
    _write_checkpoint(out_dir, seed)
    logger.warning("Built a tiny SeamlessM4T v2 checkpoint in %s: %s", out_dir, _NOISE_WARNING)
    return out_dir


_REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
# Staging folders left behind by a process killed mid-build are removed once they are this old.
_STALE_STAGING_S = 3600.0


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def _remove_stale_staging(cache_dir: Path) -> None:
    now = time.time()
    for staging in cache_dir.glob(f".{TINY_MODEL_DIRNAME}.*.tmp"):
        try:
            old = now - staging.stat().st_mtime > _STALE_STAGING_S
        except FileNotFoundError:
            continue
        if old:
            shutil.rmtree(staging, ignore_errors=True)


def ensure_tiny_model(cache_dir: Path) -> Path:
    """Return ``cache_dir/seamless-m4t-v2-tiny-v<recipe version>``, building it first if it is not there.

    Safe when several processes (or threads) call it at once: each builds into its own staging folder next to
    the target and renames it into place; whoever comes second drops its copy and uses the first one.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / TINY_MODEL_DIRNAME
    if not _is_complete(target):
        if target.exists():
            raise RuntimeError(f"{target} exists but is not a complete tiny checkpoint: remove it and retry")
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(cache_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{TINY_MODEL_DIRNAME}.", suffix=".tmp", dir=cache_dir))
        try:
            _write_checkpoint(staging, seed=0)
            staging.chmod(0o755)  # mkdtemp made it private; the cache may be shared
            try:
                os.rename(staging, target)
                logger.info("Built the tiny SeamlessM4T v2 checkpoint in %s", target)
            except OSError:
                if not _is_complete(target):
                    raise
                logger.info("Another process built %s first: dropping this copy", target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    logger.warning("Using the tiny SeamlessM4T v2 checkpoint in %s: %s", target, _NOISE_WARNING)
    return target
