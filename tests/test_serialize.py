"""bot.serialize: the outbox's JSON of a message is ASCII, and gives the message back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.doc import (
    Bold,
    Button,
    Heading,
    Link,
    ListBlock,
    Math,
    MathBlock,
    Message,
    Paragraph,
    Text,
)
from bot.serialize import message_from_json, message_to_json


def test_a_digest_with_emoji_and_accents_is_stored_as_ascii_and_comes_back_whole() -> None:
    message = Message(
        [
            Heading((Text("📰 Your papers for Thu 3 Dec 2026"),)),
            ListBlock(
                ((Bold((Text("Schrödinger bridges"),)), Text(" · Zoë Ünal · ▲ 59")),),
                ordered=True,
            ),
            Paragraph(
                (Math(r"\alpha \le \beta", "α ≤ β"), Link("中文", "https://arxiv.org/abs/1"))
            ),
            MathBlock(r"\sum_i x_i", "∑ᵢ xᵢ", "eq:1", b"\x89PNG"),
        ],
        [[Button("💡 1", command="explain", arg="2601.00001", item=1)]],
    )
    body = message_to_json(message)
    assert body.isascii()  # one byte a character in memory, however many emoji
    assert message_from_json(body) == message


def test_a_lone_surrogate_from_broken_upstream_text_is_stored_as_a_question_mark() -> None:
    message = Message([Paragraph((Text("broken \ud800 title"), Text("tail \udfff")))])
    back = message_from_json(message_to_json(message))
    assert back.blocks == [Paragraph((Text("broken ? title"), Text("tail ?")))]
    # What is sent later encodes as UTF-8 (a lone surrogate would fail the whole send).
    assert str(back).encode("utf-8")


def test_text_that_only_looks_like_an_escape_is_kept_as_written() -> None:
    message = Message([Paragraph((Text(r"see \ud800 and \udc00 in the source"),))])
    assert message_from_json(message_to_json(message)) == message


# Any text, often with surrogates (hypothesis leaves them out unless asked) and with the
# pieces of an escape's look-alike.
_any_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.sampled_from(["\\", "u", "d", "8", "c", "0"]),
    )
)


@given(_any_text)
def test_any_text_comes_back_as_text_that_can_be_sent(text: str) -> None:
    back = message_from_json(message_to_json(Message([Paragraph((Text(text),))])))
    (got,) = back.blocks
    assert isinstance(got, Paragraph)
    sent = got.children[0]
    assert isinstance(sent, Text)
    sent.text.encode("utf-8")  # never raises
    if not any("\ud800" <= c <= "\udfff" for c in text):
        assert sent.text == text
    else:
        assert len(sent.text) <= len(text)
