"""Numbers written the way Chinese questions write them → floats.

`parse_number('三千五百') == 3500.0`, `parse_number('1.2万') == 12000.0`, `parse_number('两亿') == 2e8`,
`parse_number('百分之五') == parse_number('5%') == 5.0` (percent *points* by default, because the challenge's
tables store percentages as numbers in columns whose header says "%"; pass `percent_as_fraction=True` for
0.05). Full-width digits, thousands separators, decimals (`3.5`, `三点五`), the colloquial short forms
(`三千五` = 3500, `一万二` = 12000), digit-by-digit readings (`二零一九` = 2019) and a leading minus
(`-3`, `负三`) are understood. Anything else gives None: the parser never guesses.

`find_numbers(text)` finds the number-like substrings of a sentence (for aligning gold values to question
spans), and `format_number(x)` writes a float the way the challenge's SQL values are written ('3500', '1.5').
"""
import re
import unicodedata

__all__ = ['parse_number', 'find_numbers', 'format_number', 'numbers_equal', 'scale_to_header_unit']

_DIGITS = {'零': 0, '〇': 0, '一': 1, '壹': 1, '二': 2, '贰': 2, '两': 2, '三': 3, '叁': 3, '四': 4, '肆': 4,
           '五': 5, '伍': 5, '六': 6, '陆': 6, '七': 7, '柒': 7, '八': 8, '捌': 8, '九': 9, '玖': 9}
_SMALL_UNITS = {'十': 10, '拾': 10, '百': 100, '佰': 100, '千': 1000, '仟': 1000}
_BIG_UNITS = {'万': 1e4, '萬': 1e4, '亿': 1e8, '億': 1e8}
_ARABIC = re.compile(r'\d+(?:\.\d+)?|\.\d+')
_PLAIN = re.compile(r'\d+(?:\.\d+)?|\.\d+')
# characters that can belong to a written number (after NFKC: full-width digits are ASCII)
_NUMBER_CHARS = '0-9.%点负' + ''.join(_DIGITS) + ''.join(_SMALL_UNITS) + ''.join(_BIG_UNITS)
_NUMBER_RUN = re.compile('(?:百分之)?[%s](?:[%s,]*[%s])?' % (_NUMBER_CHARS, _NUMBER_CHARS, _NUMBER_CHARS))


def _normalize(text):
    text = unicodedata.normalize('NFKC', text).strip()
    text = re.sub(r'\s+', '', text)
    return re.sub(r'(?<=\d),(?=\d{3}(?!\d))', '', text)  # thousands separators: 1,200,000


def parse_number(text, percent_as_fraction=False):
    """The value of a whole string that is one written number, or None.

    Args:
        text: str (or an int/float, returned as float; bool and other types give None).
        percent_as_fraction: '5%' / '百分之五' → 0.05 instead of 5.0.
    Returns:
        float or None.
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str):
        return None
    s = _normalize(text)
    percent = False
    if s.endswith('%'):
        s, percent = s[:-1], True
    elif s.startswith('百分之'):
        s, percent = s[3:], True
    sign = 1.0
    if s[:1] in ('-', '负'):
        s, sign = s[1:], -1.0
    elif s[:1] == '+':
        s = s[1:]
    if not s:
        return None
    if _PLAIN.fullmatch(s):
        value = float(s)
    else:
        value = _parse_chinese(s)
        if value is None:
            return None
    value *= sign
    if percent and percent_as_fraction:
        value /= 100.0
    return value


def _read_digits(s, i):
    """Digits (Chinese or Arabic) from position i, read one by one: ('14', next index)."""
    out = []
    while i < len(s) and (s[i] in _DIGITS or s[i].isdigit()):
        out.append(str(_DIGITS[s[i]]) if s[i] in _DIGITS else s[i])
        i += 1
    return ''.join(out), i


def _parse_chinese(s):
    """Chinese numerals, possibly mixed with Arabic numbers ('1.2万', '3千5百'); None if not a number."""
    # a reading digit by digit: 二零一九 → 2019, 三点一四 → 3.14 (no units anywhere)
    if all(ch in _DIGITS or ch == '点' for ch in s) and s.count('点') <= 1:
        whole, _, frac = s.partition('点')
        if (len(whole) > 1 and '点' not in s) or (whole and frac):
            digits = ''.join(str(_DIGITS[ch]) for ch in whole)
            if frac:
                return float(digits + '.' + ''.join(str(_DIGITS[ch]) for ch in frac))
            return float(digits)
    total = 0.0    # finished 亿 sections
    section = 0.0  # finished 万 part of the current 亿 section
    small = 0.0    # the part below 万 (十/百/千 multiples)
    number = None  # a number not yet multiplied by a unit
    single_digit = False  # `number` is one Chinese/Arabic digit (for the colloquial 三千五)
    last_unit = None
    zero_gap = False  # a 零 since the last unit: 一百零五 is 105, not 150
    seen_number = False
    i = 0
    while i < len(s):
        ch = s[i]
        match = _ARABIC.match(s, i)
        if match:
            if number is not None:
                return None
            number = float(match.group())
            single_digit = len(match.group()) == 1
            seen_number = True
            i = match.end()
            if i < len(s) and s[i] == '点':
                return None
            continue
        if ch in _DIGITS:
            if number is not None:
                return None  # 三五 (three or five) is a range, not a number
            if _DIGITS[ch] == 0:
                zero_gap = True
            else:
                number, single_digit = float(_DIGITS[ch]), True
            seen_number = True
        elif ch == '点':
            frac, j = _read_digits(s, i + 1)
            if not frac or j == i + 1:
                return None
            number = (number or 0.0) + float('0.' + frac)
            single_digit = False
            seen_number = True
            i = j
            continue
        elif ch in _SMALL_UNITS:
            unit = _SMALL_UNITS[ch]
            if last_unit is not None and last_unit <= unit and last_unit < 1e4 and number is None:
                return None  # 百千: units out of order
            small += (1.0 if number is None else number) * unit
            number, last_unit, zero_gap = None, unit, False
            seen_number = True
        elif ch in _BIG_UNITS:
            unit = _BIG_UNITS[ch]
            part = small + (number or 0.0)
            if not seen_number or part == 0:
                return None
            if unit == 1e4:
                section += part * unit
            else:
                total = (total + section + part) * unit
                section = 0.0
            small, number, last_unit, zero_gap = 0.0, None, unit, False
        else:
            return None
        i += 1
    if not seen_number:
        return None
    tail = 0.0
    if number is not None:
        if last_unit is not None and not zero_gap and single_digit:
            tail = number * last_unit / 10  # 三千五 = 3500, 一万二 = 12000, 二十五 = 25
        else:
            tail = number
    return total + section + small + tail


def find_numbers(text, percent_as_fraction=False):
    """Every maximal number-like substring of `text` that parses: [(start, end, value)] in order.

    Offsets index the original `text` (so question char offsets stay valid). A run that does not parse
    as a whole is shortened from the right until it does (e.g. '3个' → '3').
    """
    found = []
    # NFKC can change lengths for a few compatibility characters; map per character to keep offsets
    normalized = ''.join(unicodedata.normalize('NFKC', ch)[:1] or ch for ch in text)
    for match in _NUMBER_RUN.finditer(normalized):
        start, end = match.span()
        while start < end:
            cut = end
            while cut > start:
                value = parse_number(normalized[start:cut], percent_as_fraction)
                if value is not None:
                    break
                cut -= 1
            if cut > start:
                found.append((start, cut, value))
                start = cut
            else:
                start += 1
    return found


def format_number(value):
    """A float as the challenge writes values: integers without '.0', others shortest round-trip."""
    value = float(value)
    if value != value or value in (float('inf'), float('-inf')):
        raise ValueError('format_number: %r is not a finite number' % value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    text = repr(value)
    if 'e' in text or 'E' in text:
        text = ('%.15f' % value).rstrip('0').rstrip('.')
    return text


def numbers_equal(a, b, rel=1e-9):
    """Float equality up to rounding noise (values written with different digits, e.g. 1.2e4 vs 12000)."""
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def scale_to_header_unit(value, raw, header):
    """Express a question number in the unit its column header declares.

    A header such as '票房(万元)' stores 20 for a question's '20万'; the parsed question value is 200000,
    so it is divided by 1e4. Only numbers written with 万/亿 themselves are rescaled (a bare '20' is taken
    to be in the header's unit already).
    """
    header = unicodedata.normalize('NFKC', header or '')
    raw = unicodedata.normalize('NFKC', raw or '')
    if not any(unit in raw for unit in _BIG_UNITS):
        return value
    for unit in ('亿', '億', '万', '萬'):
        if unit in header:
            return value / _BIG_UNITS[unit]
    return value
