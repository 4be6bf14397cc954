"""Text a PDF reader never sees: white or transparent colour, \\phantom and the
like, a classic hiding place for instructions aimed at a model."""

from __future__ import annotations

import re

from bot.explain.latex import Groups, group_end

# Colours that make text invisible on a white page: white itself and anything so close to
# it that no reader can tell (xcolor mixes like white!97, rgb 0.98, HTML F8F8F8, gray .95).
_NEAR_WHITE_LEVEL = 0.9
_COLOR_ARG = re.compile(r"\s*(?:\[\s*([A-Za-z]+)\s*\]\s*)?\{([^{}]*)\}")
_HIDE_WITH_ARG = re.compile(
    r"\\(?:(?:h|v)?phantom"
    r"|scalebox\s*\{\s*(?:0*\.0\d*|0)\s*\}"
    r"|resizebox\s*\{\s*0(?:pt)?\s*\}\s*\{[^{}]*\}"
    r"|texttransparent\s*\{\s*0*(?:\.[0-4]\d*)?\s*\}"
    r"|fontsize\s*\{\s*(?:0*\.\d+|[01](?:\.0*)?)\s*(?:pt)?\s*\}\s*\{[^{}]*\}\s*\\selectfont)"
    r"(?![A-Za-z])"
)
# Switches that hide everything to the end of the enclosing group: \transparent{0.1}.
_HIDE_SWITCH = re.compile(r"\\transparent\s*\{\s*0*(?:\.[0-4]\d*)?\s*\}")
_DEFINE_COLOR = re.compile(
    r"\\(?:definecolor|providecolor)\s*\{([^{}]*)\}\s*\{([^{}]*)\}\s*\{([^{}]*)\}"
    r"|\\colorlet\s*\{([^{}]*)\}\s*\{([^{}]*)\}"
)


def _level(model: str, spec: str, names: set[str]) -> bool:
    """Is this xcolor colour (model + spec) white or nearly so?"""
    model = model.strip()
    spec = spec.strip()
    if not model:
        # A name, or an xcolor mix: `red!5` is 5% red in white, `white!90!black` 90% white.
        parts = [p.strip() for p in spec.split("!")]
        if len(parts) == 1:
            return parts[0] in names
        try:
            share = min(max(float(parts[1]) / 100, 0.0), 1.0)
        except ValueError:
            return False
        first = 1.0 if parts[0] in names else 0.0
        second = 1.0 if len(parts) < 3 or parts[2] in names else 0.0
        return first * share + second * (1 - share) >= _NEAR_WHITE_LEVEL
    if model.lower() == "html":
        h = spec.lstrip("#")
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", h):
            return False
        return all(int(h[i : i + 2], 16) / 255 >= _NEAR_WHITE_LEVEL for i in (0, 2, 4))
    try:
        values = [float(v) for v in re.split(r"\s*,\s*|\s+", spec) if v]
    except ValueError:
        return False
    m = model.lower()
    if not values:
        return False
    if model == "RGB":
        return len(values) == 3 and all(v / 255 >= _NEAR_WHITE_LEVEL for v in values)
    if m == "rgb":
        return len(values) == 3 and all(v >= _NEAR_WHITE_LEVEL for v in values)
    if m == "gray":
        return values[0] >= _NEAR_WHITE_LEVEL
    if m == "cmyk":
        return len(values) == 4 and all(v <= 1 - _NEAR_WHITE_LEVEL for v in values)
    return False


def near_white_names(text: str) -> set[str]:
    """Colour names the document defines as white or nearly white (\\definecolor, \\colorlet)."""
    names = {"white"}
    for _ in range(3):  # colorlet chains: a few rounds are plenty
        before = len(names)
        for m in _DEFINE_COLOR.finditer(text):
            if m.group(1) is not None:
                if _level(m.group(2), m.group(3), names):
                    names.add(m.group(1).strip())
            elif _level("", m.group(5), names):
                names.add(m.group(4).strip())
        if len(names) == before:
            break
    return names


def _colour_at(text: str, i: int, names: set[str]) -> tuple[bool, int] | None:
    """After \\color or \\textcolor: (is it near white, index past the colour spec)."""
    m = _COLOR_ARG.match(text, i)
    if not m:
        return None
    return _level(m.group(1) or "", m.group(2), names), m.end()


_COLOR_CMD = re.compile(r"\\(textcolor|color)(?![A-Za-z])")


def strip_hidden(text: str, definitions: str = "") -> str:
    """Remove text a reader of the PDF cannot see: white or near-white text, transparent
    text, phantoms, microscopic fonts. `definitions`: where \\definecolor may live too.

    Hidden text is the usual carrier of prompt injections aimed at LLM reviewers.
    """
    return strip_hidden_counted(text, definitions)[0]


def strip_hidden_counted(text: str, definitions: str = "") -> tuple[str, int]:
    """`strip_hidden`, and how many hidden passages were removed.

    Three left-to-right passes (colours, commands with an argument, switches), each linear:
    every match either is skipped or removes a span, and the scan goes on after it.
    """
    names = near_white_names(definitions + "\n" + text)
    removed = 0

    def colour_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        # \textcolor{white}{...} drops its argument; {\color{white} ...} hides to group end.
        found = _colour_at(g.s, m.end(), names)
        if found is None or not found[0]:
            return None
        if m.group(1) == "textcolor":
            arg = g.read(found[1])
            return found[1], arg[1] if arg is not None else found[1]
        return found[1], group_end(g.s, found[1], paragraph=True)

    def command_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        if m.group(0).endswith("selectfont"):  # a font switch: hidden to the group's end
            return m.end(), group_end(g.s, m.end(), paragraph=True)
        arg = g.read(m.end())
        return m.end(), arg[1] if arg is not None else m.end()

    def switch_end(g: Groups, m: re.Match[str]) -> tuple[int, int] | None:
        return m.end(), group_end(g.s, m.end(), paragraph=True)

    for pattern, end_of in (
        (_COLOR_CMD, colour_end),
        (_HIDE_WITH_ARG, command_end),
        (_HIDE_SWITCH, switch_end),
    ):
        out: list[str] = []
        pos = 0
        groups = Groups(text)
        for m in pattern.finditer(text):
            if m.start() < pos:
                continue  # inside a span already removed
            span = end_of(groups, m)
            if span is None:
                continue
            removed += _wordy(text[span[0] : span[1]])
            out.append(text[pos : m.start()])
            pos = span[1]
        out.append(text[pos:])
        text = "".join(out)
    return text, removed


def _wordy(hidden: str) -> int:
    """1 if hidden text says something (words, not a `\\phantom{-}` for alignment)."""
    return 1 if re.search(r"[A-Za-z]{2,}[^A-Za-z]+[A-Za-z]{2,}", hidden) else 0
