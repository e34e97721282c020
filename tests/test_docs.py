"""The README stays true: its settings table is the one the code generates, and it shows the set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings_doc import settings_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_generated_from_the_code() -> None:
    text = README.read_text()
    match = re.search(r"<!-- settings:start[^>]*-->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert match, "README lost its settings markers"
    assert match.group(1).strip() == settings_markdown().strip(), "run: m4t settings --update README.md"


def test_readme_shows_the_two_set_up_commands_and_the_seed_examples() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
    for endpoint in ("s2st", "s2tt", "t2st", "t2tt"):
        assert f'curl -X POST "http://localhost:8000/api/v1/{endpoint}"' in text


def test_readme_client_example_runs_against_a_real_stack(tmp_path: Path, tiny_model_dir: Path) -> None:
    from stack import running_stack

    text = README.read_text()
    section = text[text.index("## Python client and command line") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the client section lost its example"
    data = Path(__file__).parent / "data"
    # The example detects a language too: lingua's low-accuracy mode loads in a second (the default takes 7-25 s).
    with running_stack(tmp_path, tiny_model_dir, M4T_DETECT_ACCURACY="low") as stack:
        example = (
            code.group(1)
            .replace('"http://localhost:8000"', repr(stack.url))
            .replace('api_key="m4t_…"', "api_key=None")
            .replace('"meeting.flac"', repr(str(data / "speech_fr.wav")))
            .replace('"meeting.eng.mp3"', repr(str(tmp_path / "out.mp3")))
        )
        exec(compile(example, "README.md", "exec"), {})
    assert (tmp_path / "out.mp3").stat().st_size > 0
