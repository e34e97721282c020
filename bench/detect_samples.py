"""Sample text for bench/detect.py: short everyday sentences whose language is plain, text that must be refused,
and pairs lingua cannot tell apart. Written for this benchmark (no corpus is downloaded)."""

from __future__ import annotations

import random
import string

CLEAR: dict[str, list[str]] = {
    "eng": ["The weather is lovely today, so we are going for a walk.", "Could you tell me where the station is?"],
    "fra": ["Bonjour le monde. Comment allez-vous ?", "Nous avons mangé au restaurant hier soir."],
    "deu": ["Ich habe heute keine Zeit, weil ich arbeiten muss.", "Wo ist der nächste Bahnhof, bitte?"],
    "spa": ["¿Dónde está la biblioteca? Necesito estudiar.", "Mañana vamos a la playa con mis hermanos."],
    "ita": ["Vorrei prenotare un tavolo per due persone stasera.", "Il treno per Roma parte tra dieci minuti."],
    "por": ["Eu gostaria de comprar um bilhete para Lisboa, por favor.", "Não sei onde deixei as minhas chaves."],
    "nld": ["Ik woon al tien jaar in Amsterdam en fiets elke dag.", "Kunt u mij vertellen hoe laat het is?"],
    "swe": ["Jag tycker om att läsa böcker på kvällen.", "Vi ska åka till Stockholm nästa vecka."],
    "dan": ["Jeg kan godt lide at læse bøger om aftenen.", "Vi skal til København i weekenden."],
    "pol": ["Dzisiaj jest bardzo ładna pogoda, idziemy na spacer.", "Czy mógłbyś mi pomóc z tym zadaniem?"],
    "ces": ["Dnes je krásné počasí, půjdeme na procházku.", "Můžete mi říct, kde je nádraží?"],
    "hun": ["Ma nagyon szép idő van, elmegyünk sétálni.", "Meg tudná mondani, hol van a pályaudvar?"],
    "fin": ["Tänään on kaunis ilma, joten lähdemme kävelylle.", "Voisitko kertoa, missä rautatieasema on?"],
    "ron": ["Astăzi vremea este foarte frumoasă, mergem la plimbare.", "Unde este gara, vă rog?"],
    "tur": ["Bugün hava çok güzel, parka yürüyüşe gidiyoruz.", "Bana istasyonun nerede olduğunu söyler misiniz?"],
    "vie": ["Hôm nay trời đẹp quá, chúng ta đi dạo công viên nhé.", "Bạn có thể chỉ cho tôi nhà ga ở đâu không?"],
    "rus": ["Я люблю читать книги по вечерам.", "Скажите, пожалуйста, где находится вокзал?"],
    "ukr": ["Я люблю читати книжки вечорами.", "Скажіть, будь ласка, де знаходиться вокзал?"],
    "bul": ["Днес времето е много хубаво и отиваме на разходка.", "Можете ли да ми кажете къде е гарата?"],
    "srp": ["Данас је лепо време и идемо у шетњу.", "Можете ли ми рећи где је железничка станица?"],
    "ell": ["Σήμερα ο καιρός είναι πολύ ωραίος και πάμε βόλτα.", "Μπορείτε να μου πείτε πού είναι ο σταθμός;"],
    "heb": ["היום מזג האוויר יפה מאוד ואנחנו הולכים לטייל.", "אתה יכול להגיד לי איפה תחנת הרכבת?"],
    "arb": ["أحب قراءة الكتب في المساء.", "هل يمكنك أن تخبرني أين تقع محطة القطار؟"],
    "pes": ["امروز هوا خیلی خوب است و ما به پارک می‌رویم.", "می‌توانید به من بگویید ایستگاه قطار کجاست؟"],
    "hin": ["मुझे शाम को किताबें पढ़ना पसंद है।", "क्या आप मुझे बता सकते हैं कि रेलवे स्टेशन कहाँ है?"],
    "tha": ["วันนี้อากาศดีมาก เราจะไปเดินเล่นที่สวนสาธารณะ", "คุณช่วยบอกฉันได้ไหมว่าสถานีรถไฟอยู่ที่ไหน"],
    "jpn": ["今日はとても良い天気ですね。", "駅はどこにあるか教えていただけますか。"],
    "kor": ["오늘 날씨가 정말 좋네요.", "기차역이 어디에 있는지 알려 주시겠어요?"],
    "cmn": ["我们今天去公园散步，天气很好。", "请问火车站在哪里？"],
    "cmn_Hant": ["我們今天去公園散步，天氣很好。", "請問火車站在哪裡？"],
    "cat": ["Avui fa molt bon temps i anirem a passejar.", "Em podries dir on és l'estació de tren?"],
    "eus": ["Gaur eguraldi oso ona dago eta paseatzera goaz.", "Esango zenidake non dagoen tren geltokia?"],
    "cym": [
        "Mae'r tywydd yn braf iawn heddiw, felly rydyn ni'n mynd am dro.",
        "Ble mae'r orsaf drenau, os gwelwch yn dda?",
    ],
    "afr": ["Die weer is vandag baie mooi, so ons gaan stap.", "Kan jy my asseblief sê waar die stasie is?"],
    "swh": ["Leo hali ya hewa ni nzuri sana, tunakwenda kutembea.", "Unaweza kuniambia kituo cha treni kiko wapi?"],
}
"""Sentences by the code the detector should answer."""

CONFUSED: dict[str, list[str]] = {
    "ind": [
        "Saya ingin pergi ke pasar untuk membeli sayuran dan buah-buahan.",
        "Apakah Anda tahu di mana stasiun kereta?",
    ],
    "zlm": ["Saya hendak pergi ke pasar untuk membeli sayur-sayuran.", "Adakah anda tahu di mana stesen kereta api?"],
    "nob": ["Jeg liker å lese bøker om kvelden, men i dag har jeg ikke tid.", "Hvor ligger jernbanestasjonen?"],
    "nno": ["Eg likar å lesa bøker om kvelden, men i dag har eg ikkje tid.", "Kvar ligg jernbanestasjonen?"],
    "hrv": ["Danas je lijepo vrijeme i idemo u šetnju.", "Možete li mi reći gdje je željeznički kolodvor?"],
    "bos": ["Danas je lijepo vrijeme i idemo u šetnju parkom.", "Možete li mi reći gdje je željeznička stanica?"],
}
"""Sentences of the pairs the detector must refuse (``CONFUSABLE``)."""

AMBIGUOUS_WORDS = ["die", "no", "ok", "Hotel", "taxi", "radio", "a", "in", "son", "man", "hand", "festival"]
"""Single words several languages share."""


def random_strings(count: int, *, seed: int = 12, digits: bool = True) -> list[str]:
    """A few random letters (and digits), in one to three groups: text no language explains."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + (string.digits if digits else "")
    return [
        " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 8))) for _ in range(rng.randint(1, 3)))
        for _ in range(count)
    ]


def long_text(chars: int) -> str:
    """About ``chars`` characters of French prose (repeated sentences), for the time of a long submission."""
    sentences = " ".join(CLEAR["fra"]) + " Il fait beau aujourd'hui et nous allons nous promener au bord de la mer. "
    return (sentences * (chars // len(sentences) + 1))[:chars]
