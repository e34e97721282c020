#!/usr/bin/env bash
# Regenerates the small speech files the tests use. Needs Debian's espeak-ng and sox (not needed to run tests:
# the generated files are committed). Deterministic for a given espeak-ng version.
set -euo pipefail
cd "$(dirname "$0")"
say() {  # say VOICE OUT TEXT: 16 kHz mono 16-bit WAV
  espeak-ng -v "$1" -s 150 -w /tmp/m4t-say.wav "$3"
  sox /tmp/m4t-say.wav -r 16000 -c 1 -b 16 "$2"
  rm -f /tmp/m4t-say.wav
}
say fr speech_fr.wav "Bonjour le monde. Comment allez-vous aujourd'hui ?"
say en speech_en.wav "The weather is nice today."
