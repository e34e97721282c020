#!/usr/bin/env bash
# Regenerates the small speech files the tests use. Needs Debian's espeak-ng and sox (not needed to run tests:
# the generated files are committed). Deterministic for a given espeak-ng version.
set -euo pipefail
cd "$(dirname "$0")"
say() {  # say VOICE OUT TEXT: 16 kHz mono 16-bit WAV
  espeak-ng -v "$1" -s 150 -w /tmp/m4t-say.wav "$3"
  sox -R /tmp/m4t-say.wav -r 16000 -c 1 -b 16 "$2"
  rm -f /tmp/m4t-say.wav
}
say fr speech_fr.wav "Bonjour le monde. Comment allez-vous aujourd'hui ?"
say en speech_en.wav "The weather is nice today."

# Utterances for the segmentation tests (tests/test_segmentation.py): 16 kHz mono OGG Vorbis, one clause each (no
# punctuation inside, so no pause inside), leading and trailing silence trimmed (at -50 dBFS) so that speech starts
# at the first sample and ends at the last: the tests place them at known positions between known silences.
# `-g 0`: no extra gap between words. `sox -R`: repeatable dither, so reruns give identical files; `-v 0.9`
# avoids clipping in the resampler.
clip() {  # clip VOICE OUT TEXT
  espeak-ng -v "$1" -s 150 -g 0 -w /tmp/m4t-clip.wav "$3"
  sox -R -v 0.9 /tmp/m4t-clip.wav -r 16000 -c 1 -C 3 "$2" \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse
  rm -f /tmp/m4t-clip.wav
}
clip en utt_en.ogg "Good morning everyone and thank you for coming to the meeting"
clip fr utt_fr.ogg "Nous allons parler du budget de l'année prochaine"
clip de utt_de.ogg "Der Zug nach Berlin fährt heute um acht Uhr ab"
clip es utt_es.ogg "Me gustaría reservar una mesa para dos personas"
clip hi utt_hi.ogg "मेरा नाम राहुल है और मैं दिल्ली में रहता हूँ"
clip cmn utt_zh.ogg "今天天气很好我们去公园"

# A ~90 s English monologue with no pause longer than 0.2 s: one long clause without any punctuation (espeak-ng
# pauses only at punctuation), no extra word gap. Checked with Silero VAD and an energy gate (see the tests).
clip en monologue_en.ogg "the committee met on tuesday morning to review the plans for the new library and the \
members agreed that the building should have more space for children and for students who need a quiet place to \
work in the evenings and the architect explained that the roof would collect rain water for the gardens around the \
site while large windows on the south side would bring in light during the long winter months and reduce the cost \
of heating and then the treasurer presented the budget for the next three years which includes the money for new \
books and computers and for the salaries of two more librarians who would run reading clubs for young people and \
help older visitors learn how to use the online catalogue and the public services of the city and after a long \
discussion about the parking lot and the bicycle racks the members voted to ask the city council for a small \
increase in the grant so that the work can begin in the spring and finish before the end of the following year \
when the old building will be turned into a community centre with a kitchen a music room and a workshop where \
people can repair their own furniture and electrical appliances with the help of volunteers from the neighbourhood \
and the chair thanked everyone for their patience and reminded them that the next meeting would take place in the \
town hall because the room they use today will be painted during the holidays and nobody wants to breathe the \
smell of fresh paint for two hours while talking about money and buildings and schedules"
