"""The Telegram HTML renderer, checked against the fake server's Telegram-like parser."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.telegram import (
    MAX_CALLBACK_DATA,
    callback_data,
    parse_callback_data,
    render_html,
    utf16_len,
)
from bot.doc import (
    Block,
    Bold,
    Button,
    Code,
    CodeBlock,
    Heading,
    Inline,
    Italic,
    Link,
    ListBlock,
    Math,
    MathBlock,
    Message,
    Paragraph,
    Text,
)
from tests.fakes.telegram import EntityParseError, parse_html

HOSTILE = "</b><i>Attention & <script>alert(\"x\")</script> &amp; &lt; 'quotes' > 𝔼[x²] 👩‍🔬"


def visible(part: str) -> str:
    return parse_html(part)[0]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ------------------------------------------------------------------ the fake's parser


@pytest.mark.parametrize(
    "bad",
    [
        "<b>unclosed",
        "a </b>",
        "<b><i>x</b></i>",
        "<script>x</script>",
        "AT&T",
        "&nbsp;",
        "1 > 0",
        '<a href="javascript:alert(1)">x</a>',
        "<code><b>x</b></code>",
        '<a href="https://a.b"><a href="https://c.d">x</a></a>',
        '<span class="nope">x</span>',
        "<b",
    ],
)
def test_fake_rejects_what_telegram_rejects(bad: str) -> None:
    with pytest.raises(EntityParseError):
        parse_html(bad)


def test_fake_parses_entities_in_utf16_units() -> None:
    text, entities = parse_html(
        '😀 <b>bold</b> &lt;&#38;&#x41;&quot; <a href="https://x.org/?a=1&amp;b=2">l</a>'
    )
    assert text == '😀 bold <&A" l'
    assert entities[0] == {"type": "bold", "offset": 3, "length": 4}
    assert entities[1] == {
        "type": "text_link",
        "offset": 13,
        "length": 1,
        "url": "https://x.org/?a=1&b=2",
    }
    assert parse_html('<pre><code class="language-python">x = 1</code></pre>')[1] == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"}
    ]


# ------------------------------------------------------------------------ renderer


def test_everything_is_escaped_once() -> None:
    message = Message(
        [
            Heading((Text(HOSTILE),)),
            Paragraph((Bold((Text("a&b"), Italic((Text("<c>"),)))), Code("x < y && z"))),
            Paragraph((Link('a "quoted" <link>', 'https://e.org/?q="1"&r=<2>'),)),
            ListBlock(((Text("one & two"),), (Math("\\alpha", "α < β"),)), ordered=True),
            CodeBlock("if a < b:\n    return '&'"),
            MathBlock("E=mc^2", "E = mc²", label="1"),
        ]
    )
    [part] = render_html(message)
    text, entities = parse_html(part)
    assert HOSTILE in text
    assert "a&b<c>x < y && z" in text
    assert 'a "quoted" <link>' in text
    assert "1. one & two\n2. α < β" in text
    assert "if a < b:\n    return '&'" in text
    assert "E = mc²    (1)" in text
    links = [e for e in entities if e["type"] == "text_link"]
    assert links[0]["url"] == 'https://e.org/?q="1"&r=<2>'


def test_unsafe_links_become_plain_text() -> None:
    [part] = render_html(Message([Paragraph((Link("click", "javascript:alert(1)"),))]))
    assert part == "click"


def test_long_block_splits_at_words_and_reopens_tags() -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    message = Message([Paragraph((Bold((Text(words),)),))])
    parts = render_html(message)
    assert len(parts) > 1
    for part in parts:
        text = visible(part)
        assert utf16_len(text) <= 4096
        assert part.startswith("<b>") and part.endswith("</b>")
        assert re.fullmatch(r"(word\d+ ?)+", text.strip())
    assert squash("".join(visible(p) for p in parts)) == squash(words)


def test_astral_characters_count_twice() -> None:
    parts = render_html(Message([Paragraph((Text("😀" * 3000),))]))
    assert [utf16_len(visible(p)) for p in parts] == [4096, 6000 - 4096]


def test_blocks_are_kept_whole_when_they_fit() -> None:
    blocks: list[Block] = [Paragraph((Text("x" * 3000),)), Paragraph((Text("y" * 3000),))]
    parts = render_html(Message(blocks))
    assert [visible(p) for p in parts] == ["x" * 3000, "y" * 3000]


def test_callback_data_round_trips() -> None:
    data = callback_data("explain", "2401.12345")
    assert len(data.encode()) <= MAX_CALLBACK_DATA
    assert parse_callback_data(data) == ("explain", "2401.12345")
    assert parse_callback_data("garbage") is None
    assert Button("x", command="unsubscribe", arg="arxiv:cs.LG").arg == "arxiv:cs.LG"


# ------------------------------------------------------------------- property test

_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("<>&\"' \n\t;#/ab")),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=60,
)
_url = st.builds(lambda s: f"https://example.org/{s}", _text) | _text


def _inlines(depth: int) -> st.SearchStrategy[tuple[Inline, ...]]:
    leaf: st.SearchStrategy[Inline] = st.one_of(
        st.builds(Text, _text),
        st.builds(Code, _text),
        st.builds(Link, _text, _url),
        st.builds(Math, _text, _text),
    )
    if depth > 0:
        inner = _inlines(depth - 1)
        leaf = st.one_of(leaf, st.builds(Bold, inner), st.builds(Italic, inner))
    return st.lists(leaf, max_size=5).map(tuple)


_blocks: st.SearchStrategy[Block] = st.one_of(
    st.builds(Paragraph, _inlines(2)),
    st.builds(Heading, _inlines(1)),
    st.builds(
        ListBlock,
        st.lists(_inlines(1), max_size=4).map(tuple),
        st.booleans(),
        st.integers(0, 20),
    ),
    st.builds(CodeBlock, _text),
    st.builds(MathBlock, _text, _text, st.none() | _text),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(_blocks, max_size=8), limit=st.integers(2, 200))
def test_any_message_renders_valid_parts_within_the_limit(blocks: list[Block], limit: int) -> None:
    message = Message(blocks)
    whole = render_html(message, limit=10**9)
    parts = render_html(message, limit=limit)
    for part in parts:
        text = visible(part)  # raises if Telegram would refuse the HTML
        assert utf16_len(text) <= limit
        assert text.strip()
    assert len(whole) <= 1
    original = visible(whole[0]) if whole else ""
    assert squash("".join(visible(p) for p in parts)) == squash(original)
