"""Seeded fuzz of `Tokenizer` on hostile text: properties that hold for any input.

A fixed-seed generator (no hypothesis) mixes CJK characters in and out of the vocabulary, ASCII,
full-width punctuation, accented Latin and Greek, combining marks, emoji (with ZWJ sequences,
skin tones, flags), every kind of whitespace, control/format characters, private-use, unassigned
and noncharacter code points, and lone surrogates. Google's `FullTokenizer` handles lone surrogates
without error (`unicodedata` classifies them as Cs: kept, not whitespace/control/punctuation, so a
word holding one becomes [UNK]), so they are expected to tokenize the same way here.

Each property is checked against an independent reference: a transcription of Google's
`tokenization.py` below, bert4keras' truncation rule (pop before [SEP]), and plain Unicode
normalisation of the characters `rematch` points at.
"""
import random
import unicodedata

import pytest

from bert4keras_ext.checkpoints import default_vocab
from bert4keras_ext.tokenizers import Tokenizer

VOCAB = {token: i for i, token in enumerate(default_vocab())}
CJK_IN = [t for t in VOCAB if len(t) == 1 and 0x4E00 <= ord(t) <= 0x9FFF]

ASCII = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'
WORDS = ['the', 'good', 'goods', 'Bad', 'OKing', 'running', 'x1', '[CLS]', '[UNK]', '##s', '3.14',
         'a' * 201, 'b' * 200, 'e\u0301' * 150]  # words over 200 characters become [UNK] (Google)
FULL_WIDTH = '，。！？、；：“”‘’（）《》【】…—～·「」『』〔〕ＡＢｃ１２＃％＆'
ACCENTED = 'éÉàçñÖüÅøßẞİıǅŉΣσςΆΪάΐЁй'
COMBINING = ['\u0301', '\u0308', '\u0327', '\u0345', '\u05b0', '\u20dd', 'e\u0301', 'a\u0323\u0302', '\u0338']
EMOJI = ['\U0001F600', '\U0001F44D\U0001F3FD', '\U0001F468\u200d\U0001F469\u200d\U0001F467',
         '\u2764\ufe0f', '\U0001F1E8\U0001F1F3', '\U0001F3F3\ufe0f\u200d\U0001F308', '#\ufe0f\u20e3']
WHITESPACE = [' ', '  ', '\t', '\n', '\r\n', '\u3000', '\xa0', '\u2003', '\u2028', '\x85', '\x1c', '\u202f']
CONTROL = ['\x00', '\x07', '\x1b', '\x7f', '\ufeff', '\u200b', '\u200d', '\u200e', '\ufffd', '\U000E0001']
ODD = ['\ue000', '\uf8ff', '\U000F0000', '\u0378', '\U0002FFFD', '\uffff', '\ufdd0', '\U0010FFFF']
SURROGATES = ['\ud800', '\udfff', '\udc00', '\ud83d']
OTHER_SCRIPTS = ['한국어', 'カタカナ', 'ひらがな', 'Привет', 'مرحبا', 'שָׁלוֹם', 'हिन्दी', 'ไทย']


def random_cjk_out(rng):
    while True:
        ch = chr(rng.choice([rng.randint(0x4E00, 0x9FFF), rng.randint(0x3400, 0x4DBF),
                             rng.randint(0x20000, 0x2A6DF), rng.randint(0xF900, 0xFAFF)]))
        if ch not in VOCAB:
            return ch


def random_wordpiece_word(rng):
    """A word WordPiece splits into vocabulary pieces (maybe capitalised / accented: 'GÓÓDly')."""
    word = rng.choice(['the', 'and', 'good', 'bad', 'ok', rng.choice('abcxyz')])
    word += ''.join(rng.choice(['s', 'ed', 'ing', 'er', 'ly']) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.3:
        word = word.upper() if rng.random() < 0.5 else word.capitalize()
    if rng.random() < 0.3:
        word = word.replace('o', rng.choice(['ó', 'ö', 'o\u0301'])).replace('e', rng.choice(['é', 'ê']))
    return word


def random_piece(rng):
    kind = rng.randrange(16)
    if kind >= 14:
        return random_wordpiece_word(rng)
    if kind == 0:
        return ''.join(rng.choice(CJK_IN) for _ in range(rng.randint(1, 6)))
    if kind == 1:
        return random_cjk_out(rng)
    if kind == 2:
        return ''.join(rng.choice(ASCII) for _ in range(rng.randint(1, 8)))
    if kind == 3:
        return rng.choice(WORDS)
    if kind == 4:
        return rng.choice(FULL_WIDTH)
    if kind == 5:
        return ''.join(rng.choice(ACCENTED + 'abc') for _ in range(rng.randint(1, 4)))
    if kind == 6:
        return rng.choice(COMBINING)
    if kind == 7:
        return rng.choice(EMOJI)
    if kind in (8, 9):
        return rng.choice(WHITESPACE)
    if kind == 10:
        return rng.choice(CONTROL)
    if kind == 11:
        return rng.choice(ODD)
    if kind == 12:
        return rng.choice(SURROGATES)
    return rng.choice(OTHER_SCRIPTS)


def random_texts(seed, count=300):
    rng = random.Random(seed)
    texts = ['', ' ', '\x00', '\ud800', '\u0301', '\U0001F468\u200d\U0001F469', 'Σ', 'ΑΣ ΑΣΑ', 'İ', '\u3000\xa0']
    while len(texts) < count:
        texts.append(''.join(random_piece(rng) for _ in range(rng.randint(1, 12))))
    return texts


# --- Google tokenization.py, transcribed (the reference for the token sequence) ----------------------
def g_is_whitespace(ch):
    return ch in ' \t\n\r' or unicodedata.category(ch) == 'Zs'


def g_is_control(ch):
    return ch not in '\t\n\r' and unicodedata.category(ch) in ('Cc', 'Cf')


def g_is_punctuation(ch):
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith('P')


def g_is_chinese(cp):
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def google_tokenize(text, vocab, do_lower_case, max_chars=200):
    cleaned = ''.join(' ' if g_is_whitespace(c) else c for c in text
                      if not (ord(c) in (0, 0xFFFD) or g_is_control(c)))
    spaced = ''.join(' %s ' % c if g_is_chinese(ord(c)) else c for c in cleaned)
    words = []
    for token in spaced.strip().split():
        if do_lower_case:
            token = ''.join(c for c in unicodedata.normalize('NFD', token.lower())
                            if unicodedata.category(c) != 'Mn')
        current = ''
        for c in token:
            if g_is_punctuation(c):
                words.extend([current, c] if current else [c])
                current = ''
            else:
                current += c
        if current:
            words.append(current)
    words = ' '.join(words).strip().split()
    out = []
    for word in words:
        if len(word) > max_chars:
            out.append('[UNK]')
            continue
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ('##' if start else '') + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            if end == start:
                pieces = ['[UNK]']
                break
            pieces.append(piece)
            start = end
        out.extend(pieces)
    return out


def normalise(chars, do_lower_case):
    """The characters as the tokenizer compares them: lower-case + strip accents when uncased.
    A capital sigma's lower-case form depends on its neighbours, so both sigmas compare equal."""
    if do_lower_case:
        chars = ''.join(c for c in unicodedata.normalize('NFD', chars.lower()) if unicodedata.category(c) != 'Mn')
    return chars.replace('ς', 'σ')


TEXTS = random_texts(0, count=500)
CLS, SEP = VOCAB['[CLS]'], VOCAB['[SEP]']


@pytest.fixture(scope='module', params=[False, True], ids=['cased', 'uncased'])
def tokenizer(request):
    return Tokenizer(dict(VOCAB), do_lower_case=request.param)


def test_tokens_ids_and_google_reference(tokenizer):
    lower = tokenizer._do_lower_case
    for text in TEXTS:
        tokens = tokenizer.tokenize(text)
        assert tokens[0] == '[CLS]' and tokens[-1] == '[SEP]', repr(text)
        assert tokens[1:-1] == google_tokenize(text, VOCAB, lower), repr(text)
        ids, segments = tokenizer.encode(text)
        assert ids == [VOCAB.get(t, VOCAB['[UNK]']) for t in tokens], repr(text)
        assert ids == [tokenizer.token_to_id(t) for t in tokens]
        assert ids[0] == CLS and ids[-1] == SEP and segments == [0] * len(ids)
        assert all(isinstance(i, int) and 0 <= i < len(VOCAB) for i in ids), repr(text)
        assert isinstance(tokenizer.decode(ids), str)


def test_maxlen_truncates_before_sep_like_bert4keras(tokenizer):
    for text in TEXTS[::3]:
        full, _ = tokenizer.encode(text)
        for maxlen in (2, 3, 5, 16):
            ids, segments = tokenizer.encode(text, maxlen=maxlen)
            assert len(ids) <= maxlen and len(segments) == len(ids)
            expected = full if len(full) <= maxlen else full[:maxlen - 1] + [SEP]
            assert ids == expected, (text, maxlen)


def test_pairs_have_segments_zero_then_one(tokenizer):
    rng = random.Random(1)
    for first in TEXTS[::4]:
        second = rng.choice(TEXTS)
        a, b = tokenizer.encode(first)[0], tokenizer.encode(second)[0]
        ids, segments = tokenizer.encode(first, second)
        assert ids == a + b[1:], (first, second)  # 'S*E*E': the second [CLS] is dropped
        assert segments == [0] * len(a) + [1] * (len(b) - 1)
        for maxlen in (3, 7, 20):
            ids, segments = tokenizer.encode(first, second, maxlen=maxlen)
            assert len(ids) == len(segments) <= maxlen
            k = segments.count(0)
            assert segments == [0] * k + [1] * (len(ids) - k) and k >= 2 and len(ids) - k >= 1
            assert ids[0] == CLS and ids[k - 1] == SEP and ids[-1] == SEP


def test_rematch_maps_tokens_to_their_characters(tokenizer):
    lower = tokenizer._do_lower_case
    for text in TEXTS:
        tokens = tokenizer.tokenize(text)
        mapping = tokenizer.rematch(text, tokens)
        assert len(mapping) == len(tokens), repr(text)
        previous_end = -1
        for token, indices in zip(tokens, mapping):
            if token in ('[CLS]', '[SEP]'):
                assert indices == [], (text, token)
                continue
            assert indices, (text, token)
            assert all(0 <= i < len(text) for i in indices), (text, token, indices)
            assert indices == sorted(set(indices)), (text, token, indices)  # strictly increasing
            assert indices[0] > previous_end, (text, tokens, mapping)  # no overlap, in order
            previous_end = indices[-1]
            if token != '[UNK]':
                covered = normalise(''.join(text[i] for i in indices), lower)
                assert normalise(Tokenizer.stem(token), lower) in covered, (text, token, indices)
