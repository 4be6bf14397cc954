"""The shared splitter (adapters/split.py): properties over random marked-up text, for a
style that counts its markup (Discord's) and one that counts visible text (Telegram's)."""

from __future__ import annotations

import html
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.split import Mark, Run, Style, cut, pack, render, size, split, utf16_len

UNIT = re.compile(r"\\.|.", re.DOTALL)
# Markers that the text below never contains, so balance can be read back from the output.
B: Mark = ("⟨b⟩", "⟨/b⟩")
IT: Mark = ("⟨i⟩", "⟨/i⟩")
A: Mark = ('⟨a href="x"⟩', "⟨/a⟩")
COUNTED = Style(counts_markup=True, unit=UNIT, tight=True)
VISIBLE = Style(counts_markup=False, escape=lambda t: html.escape(t, quote=False))
_TAG = re.compile(r"⟨(/?)(\w)[^⟩]*⟩")

_runs = st.lists(
    st.builds(
        Run,
        st.lists(st.sampled_from("abcdefgh \n😀\\*&"), max_size=80).map("".join),
        st.lists(st.sampled_from([B, IT, A]), max_size=3, unique=True).map(tuple),
        st.booleans(),
    ),
    max_size=12,
)
# Escapes come whole: a backslash is always followed by the character it escapes.
_escaped_runs = _runs.map(
    lambda runs: [Run(re.sub(r"\\(?!\*)|\\$", "", r.text), r.marks, r.whole) for r in runs]
)


def balanced(text: str) -> bool:
    stack: list[str] = []
    for m in _TAG.finditer(text):
        if not m[1]:
            stack.append(m[2])
        elif not stack or stack.pop() != m[2]:
            return False
    return not stack


def text_of(runs: list[Run]) -> str:
    return "".join(r.text for r in runs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=_escaped_runs, limit=st.integers(40, 300))  # all three marks take 31
def test_counted_markup_parts_fit_keep_the_text_and_balance(runs: list[Run], limit: int) -> None:
    parts = split(runs, limit, COUNTED)
    assert "".join(text_of(p) for p in parts) == text_of(runs)
    for part in parts:
        assert part
        out = render(part, COUNTED)
        assert utf16_len(out) <= size(part, COUNTED) <= limit
        assert balanced(out)
        # Never inside an escape: each part is made of whole units.
        assert re.fullmatch(r"(?:\\.|[^\\])*", text_of(part), re.DOTALL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=_runs, limit=st.integers(2, 200))
def test_visible_text_parts_fit_and_keep_the_text(runs: list[Run], limit: int) -> None:
    parts = split(runs, limit, VISIBLE)
    assert "".join(text_of(p) for p in parts) == text_of(runs)
    for part in parts:
        assert utf16_len(text_of(part)) <= limit
        assert balanced(render(part, VISIBLE))


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.text(alphabet="xyz😀", min_size=1, max_size=8), min_size=1, max_size=60),
    limit=st.integers(20, 80),
)
def test_words_shorter_than_a_part_are_never_cut(words: list[str], limit: int) -> None:
    runs = [Run(w + " ", (B,) if i % 3 else ()) for i, w in enumerate(words)]
    for style in (COUNTED, VISIBLE):
        for part in split(runs, limit, style):
            assert all(w in words for w in text_of(part).split())


def test_a_line_break_in_the_second_half_ends_the_part() -> None:
    text = "aaaa bbbb cccc dddd\neeee ffff gggg"
    [first, second] = split([Run(text)], 26, VISIBLE)
    assert text_of(first) == "aaaa bbbb cccc dddd\n"
    assert text_of(second) == "eeee ffff gggg"


def test_astral_characters_count_twice_and_are_never_halved() -> None:
    parts = split([Run("😀" * 3000)], 4096, VISIBLE)
    assert [utf16_len(text_of(p)) for p in parts] == [4096, 6000 - 4096]
    assert cut("a😀😀", 2, COUNTED) == ["a", "😀", "😀"]


def test_each_part_reopens_its_marks() -> None:
    parts = split([Run("one two three four", (B, IT))], 20, COUNTED)
    assert [render(p, COUNTED) for p in parts] == [
        "⟨b⟩⟨i⟩one⟨/i⟩⟨/b⟩",
        "⟨b⟩⟨i⟩two⟨/i⟩⟨/b⟩",
        "⟨b⟩⟨i⟩three⟨/i⟩⟨/b⟩",
        "⟨b⟩⟨i⟩four⟨/i⟩⟨/b⟩",
    ]


def test_tight_markup_keeps_whitespace_out_of_markers() -> None:
    runs = [Run("a ", (B,)), Run("b"), Run(" ", (IT,)), Run("c", (IT,)), Run(" ")]
    assert render(runs, COUNTED) == "⟨b⟩a⟨/b⟩ b ⟨i⟩c⟨/i⟩"
    assert render(runs, VISIBLE) == "⟨b⟩a ⟨/b⟩b⟨i⟩ c⟨/i⟩ "


def test_pack_keeps_blocks_whole_when_they_fit() -> None:
    blocks = [[Run("x" * 30)], [Run("y" * 30)], [Run("z" * 10)], [], [Run("w" * 90)]]
    parts = pack(blocks, 60, VISIBLE)
    assert [text_of(p) for p in parts] == [
        "x" * 30,
        "y" * 30 + "\n\n" + "z" * 10,
        "w" * 60,
        "w" * 30,
    ]
