"""Messages to JSON and back, so the outbox can hold what it will send.

Every node becomes a list whose first item names its type: compact, and stable as long
as the document model's field order is. MathBlock images are stored as base64.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

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
from bot.store.text import clean_text

FORMAT_VERSION = 1


def _inline(node: Inline) -> list[Any]:
    match node:
        case Text(text):
            return ["t", text]
        case Bold(children):
            return ["b", [_inline(c) for c in children]]
        case Italic(children):
            return ["i", [_inline(c) for c in children]]
        case Code(text):
            return ["c", text]
        case Link(text, url):
            return ["a", text, url]
        case Math(latex, uni):
            return ["m", latex, uni]
    raise TypeError(f"cannot serialise inline {node!r}")


def _inlines(nodes: list[Any]) -> tuple[Inline, ...]:
    return tuple(_inline_from(n) for n in nodes)


def _inline_from(data: list[Any]) -> Inline:
    tag = data[0]
    if tag == "t":
        return Text(data[1])
    if tag == "b":
        return Bold(_inlines(data[1]))
    if tag == "i":
        return Italic(_inlines(data[1]))
    if tag == "c":
        return Code(data[1])
    if tag == "a":
        return Link(data[1], data[2])
    if tag == "m":
        return Math(data[1], data[2])
    raise ValueError(f"unknown inline tag {tag!r}")


def _block(block: Block) -> list[Any]:
    match block:
        case Paragraph(children):
            return ["p", [_inline(c) for c in children]]
        case Heading(children):
            return ["h", [_inline(c) for c in children]]
        case ListBlock(items, ordered, start):
            return ["l", [[_inline(c) for c in item] for item in items], ordered, start]
        case CodeBlock(text):
            return ["pre", text]
        case MathBlock(latex, uni, label, image):
            png = base64.b64encode(image).decode("ascii") if image else None
            return ["math", latex, uni, label, png]
    raise TypeError(f"cannot serialise block {block!r}")


def _block_from(data: list[Any]) -> Block:
    tag = data[0]
    if tag == "p":
        return Paragraph(_inlines(data[1]))
    if tag == "h":
        return Heading(_inlines(data[1]))
    if tag == "l":
        return ListBlock(tuple(_inlines(item) for item in data[1]), data[2], data[3])
    if tag == "pre":
        return CodeBlock(data[1])
    if tag == "math":
        image = base64.b64decode(data[4]) if data[4] else None
        return MathBlock(data[1], data[2], data[3], image)
    raise ValueError(f"unknown block tag {tag!r}")


def _button(button: Button) -> list[Any]:
    data: list[Any] = [button.label, button.url, button.command, button.arg]
    return data if button.item is None else [*data, button.item]  # older rows have no item


# A lone surrogate's escape (from broken upstream text): a high one not followed by a low
# one, or a low one not after a high one. (Text that merely looks like one, `\\ud800`, may
# match too: it only takes the careful way.)
_LONE_SURROGATE = re.compile(
    r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)


def _dumps(data: Any) -> str:
    """Compact JSON, ASCII only: a round keeps thousands of digests in memory, and a str
    with one emoji in it takes four bytes a character (ASCII: one; the stored text is 5%
    longer). Lone surrogates become "?" (the store's `clean_text`), so a stored
    message always encodes as UTF-8 when it is sent."""
    text = json.dumps(data, separators=(",", ":"))
    if "\\ud" in text and _LONE_SURROGATE.search(text):
        cleaned = clean_text(json.dumps(data, ensure_ascii=False))
        text = json.dumps(json.loads(cleaned), separators=(",", ":"))
    return text


def message_to_json(message: Message) -> str:
    return _dumps(
        {
            "v": FORMAT_VERSION,
            "blocks": [_block(b) for b in message.blocks],
            "buttons": [[_button(b) for b in row] for row in message.buttons],
        }
    )


def item_to_json(item: tuple[Inline, ...]) -> str:
    """One item of a ListBlock, encoded for `list_message_to_json`."""
    return _dumps([_inline(c) for c in item])


def button_to_json(button: Button) -> str:
    """One button, encoded for `list_message_to_json`."""
    return _dumps(_button(button))


def block_to_json(block: Block) -> str:
    """One block, encoded for `list_message_to_json`."""
    return _dumps(_block(block))


def list_message_to_json(heading: str, rest: str) -> str:
    """`message_to_json(Message([heading, ListBlock(items, ordered=True)], buttons))`
    with `heading` encoded by `block_to_json` and `rest = list_message_rest(items,
    buttons)`: the very same text, from pieces that many messages share (JSON of a list
    is its items' JSON joined by commas)."""
    return f'{{"v":{FORMAT_VERSION},"blocks":[{heading},{rest}'


def list_message_rest(items: list[str], buttons: list[list[str]]) -> str:
    """What follows the heading in `list_message_to_json`, each item and button already
    encoded by `item_to_json` and `button_to_json` (the same for every heading)."""
    rows = "[" + ",".join("[" + ",".join(row) + "]" for row in buttons) + "]"
    return f'["l",[{",".join(items)}],true,1]],"buttons":{rows}}}'


def message_from_json(text: str) -> Message:
    data = json.loads(text)
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"unsupported message format {data.get('v')!r}")
    return Message(
        [_block_from(b) for b in data["blocks"]],
        [[Button(*b) for b in row] for row in data["buttons"]],
    )
