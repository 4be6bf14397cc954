"""What LaTeX symbols, accents and environments read as in Unicode: the tables and the
per-symbol steps that `bot.latex`'s readers share.

pylatexenc supplies the symbol table (\\alpha, \\leq, \\ldots …) and the letter alphabets
(\\mathcal, \\mathbb …); unicodeit would too, but is unmaintained since 2023. The names
below fill its gaps and hold the spellings we prefer to its own.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from pylatexenc.latex2text import LatexNodes2Text, get_default_latex_context_db

_L2T_DB = get_default_latex_context_db()

SUPERSCRIPTS = dict(
    zip(
        "0123456789+-−=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWβγδεθιφχ*′⊤†∗",
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂᵝᵞᵟᵋᶿᶥᵠᵡ*′ᵀ†*",
        strict=True,
    )
)
SUBSCRIPTS = dict(
    zip(
        "0123456789+-−=()aehijklmnoprstuvxβγρφχ",
        "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ",
        strict=True,
    )
)

# Combining marks for accents, in math (\hat x) and in text (\"o, \c{c}).
ACCENTS = {
    "hat": "\u0302", "widehat": "\u0302", "check": "\u030c", "tilde": "\u0303",
    "widetilde": "\u0303", "acute": "\u0301", "grave": "\u0300", "dot": "\u0307",
    "ddot": "\u0308", "dddot": "\u20db", "breve": "\u0306", "bar": "\u0304",
    "overline": "\u0305", "underline": "\u0332", "vec": "\u20d7", "overrightarrow": "\u20d7",
    "mathring": "\u030a",
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
    "r": "\u030a", "d": "\u0323", "b": "\u0331",
}  # fmt: skip
TEXT_ACCENT_WORDS = frozenset("uvHckrdb")  # one-letter accent macros of text mode
ALPHABETS = frozenset({"mathbb", "mathcal", "mathfrak", "mathscr", "mathbf", "mathbbm"})
PLAIN_ARG = frozenset(
    {
        "mathrm", "mathit", "mathsf", "mathtt", "boldsymbol", "bm", "operatorname",
        "operatorname*", "mathop", "mathbin", "mathrel", "mathord", "mathnormal", "pmb",
        "ensuremath", "underbrace", "overbrace",
    }
)  # fmt: skip
TEXT_ARG = frozenset(
    {"text", "textrm", "textnormal", "mbox", "hbox", "textit", "textbf", "emph", "textsf",
     "texttt", "textup", "textsl", "textsc", "textmd"}
)  # fmt: skip
DROP = frozenset(
    {
        "limits", "nolimits", "displaystyle", "textstyle", "scriptstyle",
        "scriptscriptstyle", "nonumber", "notag", "bf", "it", "rm", "sf", "tt", "em", "sc",
        "sl", "cal", "normalfont", "small", "large", "Large", "footnotesize", "scriptsize",
        "tiny", "huge", "noindent", "par", "relax", "centering", "newline", "linebreak",
        "allowbreak", "boldmath", "phantom", "hphantom", "vphantom", "mathstrut",
    }
)  # fmt: skip
DROP_WITH_ARG = frozenset({"label", "color", "tag", "vspace", "hspace", "begin", "end"})
# Macros pylatexenc has no plain replacement for, and spellings we prefer to its own.
_SYMBOLS = {
    "ne": "≠", "iff": "⟺", "implies": "⟹", "gets": "←", "arg": "arg", "det": "det",
    "bot": "⊥", "neg": "¬", "degree": "°", "colon": ":", "coloneqq": "≔", "leadsto": "⇝",
    "checkmark": "✓", "Re": "ℜ", "Im": "ℑ", "S": "§", "P": "¶", "ddag": "‡",
    "copyright": "©", "pounds": "£", "LaTeX": "LaTeX", "TeX": "TeX", "prime": "′",
    "quad": " ", "qquad": " ", "enspace": " ", "thinspace": " ", "medspace": " ",
    "thickspace": " ", "negthinspace": "", "dots": "…", "textbackslash": "\\",
    "lbrace": "{", "rbrace": "}", "vert": "|", "Vert": "‖", "lvert": "|", "rvert": "|",
    "lVert": "‖", "rVert": "‖", "argmax": "argmax", "argmin": "argmin", "tr": "tr",
    "Tr": "Tr", "diag": "diag", "rank": "rank", "sgn": "sgn", "softmax": "softmax",
    "E": "𝔼", "varnothing": "∅", "emptyset": "∅", "top": "⊤", "ell": "ℓ",
}  # fmt: skip
CONTROL_SYMBOLS = {
    ",": " ", ";": " ", ":": " ", ">": " ", " ": " ", "\n": " ", "\t": " ", "!": "",
    "-": "", "/": "", "@": "", "|": "‖", "\\": " ", "{": "{", "}": "}", "%": "%", "&": "&",
    "_": "_", "#": "#", "$": "$",
}  # fmt: skip

# Environment -> (opening, closing, between cells) for the one-line form.
ARRAYS = {
    "matrix": ("", "", ", "), "smallmatrix": ("", "", ", "), "array": ("", "", ", "),
    "pmatrix": ("(", ")", ", "), "bmatrix": ("[", "]", ", "), "Bmatrix": ("{", "}", ", "),
    "vmatrix": ("|", "|", ", "), "Vmatrix": ("‖", "‖", ", "), "cases": ("{", "}", " "),
    "dcases": ("{", "}", " "), "rcases": ("{", "}", " "), "aligned": ("", "", " "),
    "gathered": ("", "", " "), "split": ("", "", " "), "alignedat": ("", "", " "),
    "multlined": ("", "", " "), "subarray": ("", "", ", "),
}  # fmt: skip
RELATIONS = frozenset("=<>≤≥≈≠≡∼≃≅∝→⇒⟹⇔⟺∈⊂⊆:")


@lru_cache(maxsize=4096)
def symbol(name: str) -> str | None:
    """A macro's plain replacement from our table or pylatexenc's, if it has one."""
    if name in _SYMBOLS:
        return _SYMBOLS[name]
    spec = _L2T_DB.get_macro_spec(name)
    repl = getattr(spec, "simplify_repl", None) if spec is not None else None
    if isinstance(repl, str) and "%" not in repl:
        return repl
    return None


@lru_cache(maxsize=4096)
def alphabet(name: str, letters: str) -> str:
    """\\mathcal{L} -> ℒ by pylatexenc; only plain ASCII letters are handed to it."""
    if not letters.isascii() or not letters.isalnum():
        return letters
    try:
        return str(LatexNodes2Text().latex_to_text(f"\\{name}{{{letters}}}")) or letters
    except Exception:  # a library surprise must not cost us the title
        return letters


def accent(mark: str, base: str) -> str:
    # LaTeX accents a dotless i/j; Unicode composes the accented letter from the dotted one.
    base = base.replace("ı", "i").replace("ȷ", "j")
    if not base.strip():
        return mark
    # Marks go on base characters only; marking marks would double the text per level.
    marked = "".join(c if c.isspace() or unicodedata.combining(c) else c + mark for c in base)
    return unicodedata.normalize("NFC", marked)


def is_atom(s: str) -> bool:
    """Reads unambiguously without parentheses: one symbol, a number, a word."""
    return len(s) <= 1 or all(c.isalnum() or c in "′.*" for c in s)


def script(arg: str, table: dict[str, str], mark: str) -> str:
    compact = arg.replace(" ", "")
    if not compact:
        return ""
    if all(c in table for c in compact):
        return "".join(table[c] for c in compact)
    return f"{mark}{compact}" if is_atom(compact) else f"{mark}({compact})"


def fraction(num: str, den: str) -> str:
    num, den = num.strip(), den.strip()
    # A denominator mixing digits and letters is a product: 1/(12N), not 1/12N.
    den_atom = is_atom(den) and (
        den.isdigit() or not any(c.isdigit() for c in den) or len(den) <= 1
    )
    return f"{num if is_atom(num) else f'({num})'}/{den if den_atom else f'({den})'}"
