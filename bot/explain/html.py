"""arXiv HTML (LaTeXML) -> the same LaTeX-like text the source path produces.

LaTeXML keeps every formula's TeX in the `alttext` of its <math> element, tags numbered
equations "(3)" and links references to them; turning the page back into LaTeX-ish text
lets one analyzer serve both paths. Hidden elements (display:none, white or zero-size
text) are dropped: they are where prompt injections hide.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
}  # fmt: skip
_SKIP_TAGS = {
    "head",
    "title",
    "script",
    "style",
    "nav",
    "header",
    "footer",
    "noscript",
    "template",
    "svg",
    "button",
}
_SKIP_CLASSES = re.compile(
    r"\bltx_(?:bibliography|page_header|page_footer|authors|note|role_footnote|"
    r"figure|table|float|dates|pagination|TOC|keywords|classification|acknowledgements?)\b"
)
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0\d*)?\s*(?:;|$)|"
    r"font-size\s*:\s*(?:0(?:\.\d+)?|1(?:\.\d+)?)(?:px|pt)?\s*(?:;|$)|font-size\s*:\s*0(?:\.0\d*)?(?:em|rem)",
    re.I,
)
_STYLE_COLOR = re.compile(
    r"(?<![-\w])color\s*:\s*(#[0-9a-f]{3}(?:[0-9a-f]{3})?|white|rgba?\(\s*[\d.]+\s*,\s*[\d.]+\s*,"
    r"\s*[\d.]+)",
    re.I,
)


def _near_white_style(style: str) -> bool:
    """Text coloured white or so close to it that a reader of the page cannot see it."""
    m = _STYLE_COLOR.search(style)
    if not m:
        return False
    value = m.group(1).lower()
    if value == "white":
        return True
    if value.startswith("#"):
        h = value[1:]
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        channels = [float(int(h[i : i + 2], 16)) for i in (0, 2, 4)]
    else:
        channels = [float(v) for v in re.findall(r"[\d.]+", value)[:3]]
    return all(c >= 230 for c in channels)


_HEADINGS = {"h1": "title", "h2": "section", "h3": "subsection", "h4": "subsubsection"}


def _escape(text: str) -> str:
    """Plain page text -> LaTeX text, so the analyzer never mistakes it for markup."""
    text = text.replace("\\", "\\textbackslash ")
    return re.sub(r"([$%&#_{}])", r"\\\1", text)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[tuple[str, str]] = []  # (tag, role) for every open element
        self.skip = 0  # > 0 inside hidden or skipped elements
        self.in_math = 0
        self.heading: list[str] | None = None
        self.heading_cmd = ""
        self.eq_rows: list[list[str]] | None = None  # inside an equation table
        self.eq_tags: list[str] = []
        self.eq_id = ""
        self.in_tag_span = 0
        self.ref_href = ""
        self.ref_text: list[str] = []

    # Text goes to the current heading, equation or main output.
    def emit(self, s: str) -> None:
        if self.heading is not None:
            self.heading.append(s)
        else:
            self.out.append(s)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in _VOID:
            if tag == "br" and not self.skip:
                self.emit(" ")
            return
        cls = a.get("class", "")
        role = ""
        hidden = (
            tag in _SKIP_TAGS
            or "hidden" in a
            or a.get("aria-hidden") == "true"
            or bool(_HIDDEN_STYLE.search(a.get("style", "")))
            or _near_white_style(a.get("style", ""))
            or bool(_SKIP_CLASSES.search(cls))
        )
        if self.skip or hidden:
            self.stack.append((tag, "skip"))
            self.skip += 1
            return
        if tag == "math":
            role = "math"
            self.in_math += 1
            alt = a.get("alttext", "").strip()
            if self.eq_rows is not None:
                if self.eq_rows:
                    self.eq_rows[-1].append(alt)
            elif alt:
                if a.get("display") == "block":
                    self.emit(f"\n\\[ {alt} \\]\n")
                else:
                    self.emit(f"${alt}$")
        elif self.in_math:
            role = "inmath"
        elif tag == "table" and re.search(r"\bltx_equation(?:group)?\b", cls):
            role = "eq"
            self.eq_rows = []
            self.eq_tags = []
            self.eq_id = a.get("id", "")
        elif tag == "tr" and self.eq_rows is not None:
            self.eq_rows.append([])
        elif tag == "span" and "ltx_tag" in cls:
            role = "tag"
            self.in_tag_span += 1
            if self.eq_rows is not None:
                self.eq_tags.append("")
        elif tag in _HEADINGS and self.eq_rows is None:
            role = "heading"
            self.heading = []
            self.heading_cmd = _HEADINGS[tag]
        elif tag == "a" and a.get("href", "").startswith("#") and "ltx_ref" in cls:
            role = "ref"
            self.ref_href = a["href"][1:]
            self.ref_text = []
        elif tag == "div" and re.search(r"\bltx_theorem\b", cls) and self.eq_rows is None:
            # LaTeXML's theorem-like block: class ltx_theorem_<env>, an h6 title "Theorem 1.1".
            env = re.search(r"\bltx_theorem_([A-Za-z]+)", cls)
            role = "thm:" + (env.group(1) if env else "theorem")
            self.emit(f"\n\\begin{{{role[4:]}}}")
        elif tag == "h6" and self.stack and self.stack[-1][1].startswith("thm:"):
            role = "thmtitle"
            self.heading = []
        elif tag == "div" and "ltx_abstract" in cls:
            role = "abstract"
            self.emit("\n\\begin{abstract}\n")
        elif tag in ("ul", "ol"):
            role = "list"
            self.emit("\n\\begin{itemize}\n")
        elif tag == "li":
            self.emit("\n\\item ")
        elif tag == "h6" and self.stack and any(r == "abstract" for _, r in self.stack):
            role = "skip"
            self.skip += 1
        self.stack.append((tag, role))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Pop to the matching element; HTML in the wild is not always well nested.
        idx = next((i for i in range(len(self.stack) - 1, -1, -1) if self.stack[i][0] == tag), -1)
        if idx < 0:
            return
        while len(self.stack) > idx:
            t, role = self.stack.pop()
            self._close(t, role)

    def _close(self, tag: str, role: str) -> None:
        if role == "skip":
            self.skip -= 1
        elif role == "math":
            self.in_math -= 1
        elif role == "tag":
            self.in_tag_span -= 1
        elif role == "eq" and self.eq_rows is not None:
            rows = [" ".join(r).strip() for r in self.eq_rows]
            rows = [r for r in rows if r]
            tags = [t.strip().strip("()") for t in self.eq_tags if t.strip()]
            self.eq_rows = None
            if rows:
                content = " \\\\ ".join(rows)
                label = f"\\label{{{self.eq_id}}}" if self.eq_id else ""
                tag_cmd = f"\\tag{{{tags[0]}}}" if tags else ""
                env = "equation" if tags else "equation*"
                self.emit(f"\n\\begin{{{env}}}{content}{label}{tag_cmd}\\end{{{env}}}\n")
        elif role == "heading" and self.heading is not None:
            title = re.sub(r"\s+", " ", "".join(self.heading)).strip()
            self.heading = None
            if title:
                self.emit(f"\n\n\\{self.heading_cmd}{{{title}}}\n\n")
        elif role == "ref":
            text = "".join(self.ref_text).strip()
            if re.search(r"\.E\d+$|^E\d+$", self.ref_href):
                cmd = "eqref" if text.startswith("(") else "ref"
                self.emit(f"\\{cmd}{{{self.ref_href}}}")
            else:
                self.emit(_escape(text))
            self.ref_href = ""
        elif role == "thmtitle" and self.heading is not None:
            title = re.sub(r"\s+", " ", "".join(self.heading)).strip().rstrip(".")
            self.heading = None
            m = re.match(r"[A-Za-z][\w ]*?\s+([\w.]+)\s*(?:\((.*)\))?$", title)
            if m:
                note = f"[{m.group(2)}]" if m.group(2) else ""
                self.emit(f"{note}\\thmnumber{{{m.group(1)}}} ")
        elif role.startswith("thm:"):
            self.emit(f"\\end{{{role[4:]}}}\n")
        elif role == "abstract":
            self.emit("\n\\end{abstract}\n")
        elif role == "list":
            self.emit("\n\\end{itemize}\n")
        elif tag == "p" or tag == "div":
            self.emit("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skip or self.in_math:
            return
        if self.in_tag_span:
            if self.heading is not None and any(r == "thmtitle" for _, r in self.stack):
                self.heading.append(data)  # "Theorem 1.1": the statement's printed number
            if self.eq_rows is not None and self.eq_tags:
                self.eq_tags[-1] += data
            return  # section numbers and equation tags: we number things ourselves
        if self.eq_rows is not None:
            return
        if self.ref_href:
            self.ref_text.append(data)
            return
        self.emit(_escape(data))


def html_to_latex(html: str) -> tuple[str, str]:
    """(title, LaTeX-like body) of an arXiv HTML paper."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    text = "".join(reader.out)
    title = ""
    m = re.search(r"\\title\{([^\n]*)\}\n", text)
    if m:
        title = m.group(1)
        text = text[: m.start()] + text[m.end() :]
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)
    return title, text
