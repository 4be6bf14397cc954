from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.ids import (
    OLD_ARCHIVES,
    ArxivId,
    InvalidArxivId,
    find_arxiv_ids,
    is_valid_id,
    parse_arxiv_id,
)

NEW = ArxivId("2401.12345")
NEW_V2 = ArxivId("2401.12345", 2)
OLD = ArxivId("hep-th/9901001")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # bare ids
        ("2401.12345", NEW),
        ("2401.12345v2", NEW_V2),
        ("2401.12345V2", NEW_V2),
        ("0704.0001", ArxivId("0704.0001")),
        ("1412.9999v7", ArxivId("1412.9999", 7)),
        ("1501.00001", ArxivId("1501.00001")),
        ("hep-th/9901001", OLD),
        ("hep-th/9901001v3", ArxivId("hep-th/9901001", 3)),
        ("math.GT/0309136", ArxivId("math/0309136")),
        ("cond-mat.mes-hall/0101001", ArxivId("cond-mat/0101001")),
        ("math-ph/0703001", ArxivId("math-ph/0703001")),
        ("HEP-TH/9901001", OLD),
        ("astro-ph/9108001", ArxivId("astro-ph/9108001")),
        # arXiv: prefix, any case, with or without a space
        ("arXiv:2401.12345", NEW),
        ("ARXIV:2401.12345v2", NEW_V2),
        ("arxiv: 2401.12345", NEW),
        ("arXiv 2401.12345", NEW),
        ("arXiv:hep-th/9901001", OLD),
        # arxiv.org links
        ("https://arxiv.org/abs/2401.12345", NEW),
        ("http://arxiv.org/abs/2401.12345v2", NEW_V2),
        ("arxiv.org/abs/2401.12345", NEW),
        ("www.arxiv.org/abs/2401.12345", NEW),
        ("https://export.arxiv.org/abs/2401.12345", NEW),
        ("https://arxiv.org/pdf/2401.12345", NEW),
        ("https://arxiv.org/pdf/2401.12345v2.pdf", NEW_V2),
        ("https://arxiv.org/pdf/2401.12345.pdf", NEW),
        ("https://arxiv.org/html/2401.12345v2#S3.SS1", NEW_V2),
        ("https://arxiv.org/src/2401.12345", NEW),
        ("https://arxiv.org/e-print/2401.12345v2", NEW_V2),
        ("https://arxiv.org/format/2401.12345", NEW),
        ("https://arxiv.org/abs/2401.12345/", NEW),
        ("https://arxiv.org/abs/2401.12345?context=cs.LG", NEW),
        ("https://arxiv.org/abs/hep-th/9901001", OLD),
        ("https://arxiv.org/pdf/hep-th/9901001v1.pdf", ArxivId("hep-th/9901001", 1)),
        ("https://arxiv.org/abs/math.GT/0309136", ArxivId("math/0309136")),
        ("https://arxiv.org/abs/hep-th%2F9901001", OLD),
        # mirrors and readers
        ("https://ar5iv.org/html/2401.12345", NEW),
        ("https://ar5iv.labs.arxiv.org/html/2401.12345v2", NEW_V2),
        ("ar5iv.org/abs/hep-th/9901001", OLD),
        ("https://www.alphaxiv.org/abs/2401.12345", NEW),
        ("https://alphaxiv.org/overview/2401.12345v2", NEW_V2),
        ("https://huggingface.co/papers/2401.12345", NEW),
        ("huggingface.co/papers/2401.12345?utm_source=x#community", NEW),
        ("https://hf.co/papers/2401.12345", NEW),
        # DOIs
        ("10.48550/arXiv.2401.12345", NEW),
        ("https://doi.org/10.48550/arXiv.2401.12345", NEW),
        ("doi:10.48550/arxiv.2401.12345", NEW),
        ("10.48550/arXiv.hep-th/9901001", OLD),
        # what surrounds a pasted reference
        ("  2401.12345\n", NEW),
        ("(2401.12345)", NEW),
        ("[arXiv:2401.12345].", NEW),
        ("<https://arxiv.org/abs/2401.12345>", NEW),
        ('"2401.12345"', NEW),
        ("“2401.12345v2”", NEW_V2),
        ("`2401.12345`", NEW),
        ("2401.12345,", NEW),
        ("2401.12345!", NEW),
        ("\u200b2401.12345\u00a0", NEW),
    ],
)
def test_parse_accepts(text: str, expected: ArxivId) -> None:
    assert parse_arxiv_id(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("foo", None),
        ("", "empty"),
        ("   ", "empty"),
        ("2413.12345", "month 13"),
        ("2400.12345", "month 00"),
        ("0703.1234", "April 2007"),
        ("1412.12345", "4 digits"),
        ("1501.1234", "5 digits"),
        ("2401.123456", None),
        ("2401.1234", "5 digits"),
        ("2401.00000", "start at 1"),
        ("2401.12345v0", "v1"),
        ("hep-th/9913001", "month 13"),
        ("hep-th/0704001", "March 2007"),
        ("hep-th/8901001", "1991"),
        ("hep-th/9901000", "start at 1"),
        ("foo-bar/9901001", None),
        ("hep-th/990100", None),
        ("2401.12345abc", None),
        ("see 2401.12345 please", None),
        ("https://example.com/abs/2401.12345", None),
        ("https://arxiv.org/list/cs.LG/recent", None),
        ("٢٤٠١.١٢٣٤٥", None),  # Arabic-Indic digits are not arXiv digits
        ("arxıv:2401.12345", None),  # dotless i must not case-fold into "arxiv"
    ],
)
def test_parse_rejects_with_a_helpful_message(text: str, reason: str | None) -> None:
    with pytest.raises(InvalidArxivId) as info:
        parse_arxiv_id(text)
    message = str(info.value)
    assert "2401.12345" in message and "hep-th/9901001" in message
    if reason is not None:
        assert reason in message
    if text.strip():
        assert f"“{text.strip()}”" in message


def test_error_message_shortens_long_input() -> None:
    with pytest.raises(InvalidArxivId) as info:
        parse_arxiv_id("x" * 5000)
    assert len(str(info.value)) < 250


def test_invalid_arxiv_id_is_a_value_error() -> None:
    assert issubclass(InvalidArxivId, ValueError)


def test_str_and_immutability() -> None:
    assert str(NEW) == "2401.12345"
    assert str(NEW_V2) == "2401.12345v2"
    assert str(ArxivId("math/0309136", 4)) == "math/0309136v4"
    with pytest.raises(AttributeError):
        NEW.version = 3  # type: ignore[misc]
    assert hash(NEW) == hash(ArxivId("2401.12345"))


def test_find_in_free_text() -> None:
    text = (
        "Compare arXiv:2401.12345 with https://arxiv.org/abs/2401.12345v3 (same paper), "
        "also math.GT/0309136, 10.48550/arXiv.2301.00001 and <https://hf.co/papers/2312.00752>. "
        "Not ids: 1.2401.12345, 2413.12345, 12401.12345, 2401.123456, version 3.14, "
        "foo/9901001, hep-th/99010011."
    )
    assert find_arxiv_ids(text) == [
        ArxivId("2401.12345"),
        ArxivId("math/0309136"),
        ArxivId("2301.00001"),
        ArxivId("2312.00752"),
    ]


def test_find_keeps_first_version_seen() -> None:
    assert find_arxiv_ids("2401.12345v2 then 2401.12345v1") == [ArxivId("2401.12345", 2)]


def test_find_nothing() -> None:
    assert find_arxiv_ids("") == []
    assert find_arxiv_ids("no papers here, just 2024.01 and 12345") == []


@pytest.mark.parametrize(
    ("canonical", "ok"),
    [
        ("2401.12345", True),
        ("0704.0001", True),
        ("hep-th/9901001", True),
        ("math/0309136", True),
        ("2401.12345v2", False),
        ("math.GT/0309136", False),
        ("HEP-TH/9901001", False),
        ("arXiv:2401.12345", False),
        ("2413.12345", False),
        ("1501.1234", False),
        (" 2401.12345", False),
        ("", False),
    ],
)
def test_is_valid_id(canonical: str, ok: bool) -> None:
    assert is_valid_id(canonical) is ok


# ------------------------------------------------------------------ properties


@st.composite
def new_style(draw: st.DrawFn) -> str:
    yymm = draw(st.integers(704, 9912).filter(lambda v: 1 <= v % 100 <= 12))
    digits = 4 if yymm < 1501 else 5
    number = draw(st.integers(1, 10**digits - 1))
    return f"{yymm:04d}.{number:0{digits}d}"


@st.composite
def old_style(draw: st.DrawFn) -> str:
    archive = draw(st.sampled_from(sorted(OLD_ARCHIVES)))
    year = draw(st.sampled_from([*range(91, 100), *range(0, 8)]))
    month = draw(st.integers(1, 3 if year == 7 else 12))
    number = draw(st.integers(1, 999))
    return f"{archive}/{year:02d}{month:02d}{number:03d}"


arxiv_ids = st.builds(
    ArxivId,
    st.one_of(new_style(), old_style()),
    st.one_of(st.none(), st.integers(1, 10**6)),
)

FORMS = [
    "{id}",
    "arXiv:{id}",
    "arxiv: {id}",
    "https://arxiv.org/abs/{id}",
    "http://www.arxiv.org/pdf/{id}.pdf",
    "arxiv.org/html/{id}#S2",
    "https://export.arxiv.org/abs/{id}?fmt=txt",
    "https://arxiv.org/e-print/{id}",
    "https://ar5iv.labs.arxiv.org/html/{id}",
    "https://www.alphaxiv.org/overview/{id}",
    "https://huggingface.co/papers/{id}?a=b#c",
    "10.48550/arXiv.{id}",
    "https://doi.org/10.48550/arXiv.{id}",
]
WRAPS = ["{}", "  {}  ", "({})", "[{}].", "<{}>", "“{}”", '"{}",', "`{}`", "*{}*", "{}!"]


@given(arxiv_ids, st.sampled_from(FORMS), st.sampled_from(WRAPS))
def test_any_form_parses_back(aid: ArxivId, form: str, wrap: str) -> None:
    text = wrap.format(form.format(id=str(aid)))
    assert parse_arxiv_id(text) == aid
    assert is_valid_id(aid.id)


@given(arxiv_ids)
def test_str_round_trips(aid: ArxivId) -> None:
    again = parse_arxiv_id(str(aid))
    assert again == aid
    assert parse_arxiv_id(str(again)) == again


@given(st.lists(arxiv_ids, min_size=1, max_size=5), st.sampled_from(FORMS))
def test_find_recovers_ids_from_prose(ids: list[ArxivId], form: str) -> None:
    text = " and ".join(f"see {form.format(id=str(a))}." for a in ids)
    expected: list[ArxivId] = []
    for a in ids:
        if a.id not in {e.id for e in expected}:
            expected.append(a)
    assert find_arxiv_ids(text) == expected


@given(st.text())
def test_garbage_only_raises_invalid_arxiv_id(text: str) -> None:
    try:
        aid = parse_arxiv_id(text)
    except InvalidArxivId as e:
        assert str(e)
    else:
        assert is_valid_id(aid.id)
    for found in find_arxiv_ids(text):
        assert is_valid_id(found.id)


@given(st.from_regex(r"[0-9a-zA-Z:/.\-v%]{0,30}", fullmatch=True))
def test_id_like_garbage_only_raises_invalid_arxiv_id(text: str) -> None:
    try:
        aid = parse_arxiv_id(text)
    except InvalidArxivId:
        return
    assert is_valid_id(aid.id)
    assert aid.version is None or aid.version >= 1
