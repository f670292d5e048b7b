"""Tests for bert4keras_ext.tokenizers.

The package tokenizer is fast (lazy translate tables, per-word caches). Everything here is checked
against independent references: hand-derived golden cases, and a deliberately plain, literal
re-implementation of google-research/bert ``BasicTokenizer`` + ``WordpieceTokenizer`` written below
(``ReferenceFullTokenizer``) that is run over the sentiment corpus, every BMP code point and seeded
random strings.
"""
import collections
import os
import pickle
import random
import re
import unicodedata

import pytest

from bert4keras_ext.tokenizers import Tokenizer, load_vocab, save_vocab

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTIMENT_DIR = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'datasets', 'sentiment')


# ------------------------------------------------------------------------------------------------
# Reference: Google's BasicTokenizer + WordpieceTokenizer, step by step, no shortcuts.
# ------------------------------------------------------------------------------------------------

def ref_is_whitespace(ch):
    if ch == ' ' or ch == '\t' or ch == '\n' or ch == '\r':
        return True
    return unicodedata.category(ch) == 'Zs'


def ref_is_control(ch):
    if ch == '\t' or ch == '\n' or ch == '\r':
        return False
    return unicodedata.category(ch) in ('Cc', 'Cf')


def ref_is_punctuation(ch):
    cp = ord(ch)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(ch).startswith('P')


def ref_is_chinese_char(cp):
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
            or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F)
            or (0x2B820 <= cp <= 0x2CEAF) or (0xF900 <= cp <= 0xFAFF)
            or (0x2F800 <= cp <= 0x2FA1F))


def ref_whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


class ReferenceFullTokenizer:
    """A literal transcription of Google's FullTokenizer algorithm (slow on purpose)."""

    def __init__(self, vocab, do_lower_case, unk='[UNK]', max_chars=200):
        self.vocab = vocab
        self.do_lower_case = do_lower_case
        self.unk = unk
        self.max_chars = max_chars

    def clean_text(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or ref_is_control(ch):
                continue
            out.append(' ' if ref_is_whitespace(ch) else ch)
        return ''.join(out)

    def tokenize_chinese_chars(self, text):
        out = []
        for ch in text:
            if ref_is_chinese_char(ord(ch)):
                out.extend([' ', ch, ' '])
            else:
                out.append(ch)
        return ''.join(out)

    def strip_accents(self, text):
        text = unicodedata.normalize('NFD', text)
        return ''.join(ch for ch in text if unicodedata.category(ch) != 'Mn')

    def split_on_punc(self, text):
        output, start_new_word = [], True
        for ch in text:
            if ref_is_punctuation(ch):
                output.append([ch])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(ch)
        return [''.join(x) for x in output]

    def basic_tokenize(self, text):
        text = self.clean_text(text)
        text = self.tokenize_chinese_chars(text)
        split_tokens = []
        for token in ref_whitespace_tokenize(text):
            if self.do_lower_case:
                token = token.lower()
                token = self.strip_accents(token)
            split_tokens.extend(self.split_on_punc(token))
        return ref_whitespace_tokenize(' '.join(split_tokens))

    def wordpiece(self, text):
        output = []
        for token in ref_whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_chars:
                output.append(self.unk)
                continue
            is_bad, start, sub_tokens = False, 0, []
            while start < len(chars):
                end, cur = len(chars), None
                while start < end:
                    substr = ''.join(chars[start:end])
                    if start > 0:
                        substr = '##' + substr
                    if substr in self.vocab:
                        cur = substr
                        break
                    end -= 1
                if cur is None:
                    is_bad = True
                    break
                sub_tokens.append(cur)
                start = end
            if is_bad:
                output.append(self.unk)
            else:
                output.extend(sub_tokens)
        return output

    def tokenize(self, text):
        return [p for token in self.basic_tokenize(text) for p in self.wordpiece(token)]


# ------------------------------------------------------------------------------------------------
# Vocabularies
# ------------------------------------------------------------------------------------------------

SPECIALS = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]']


def build_corpus_vocab(texts, size=21128, min_char_count=2):
    """A Google-Chinese-like vocab (~21k) from a corpus: specials, chars, English pieces, ##chars.

    Characters seen fewer than ``min_char_count`` times are left out so that [UNK] really happens.
    """
    char_counts, word_counts = collections.Counter(), collections.Counter()
    for text in texts:
        char_counts.update(text)
        word_counts.update(re.findall('[a-z]+', text.lower()))
    tokens = list(SPECIALS)
    tokens += [chr(c) for c in range(33, 127)]
    tokens += ['##' + chr(c) for c in range(33, 127) if chr(c).isalnum()]
    for ch, n in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n >= min_char_count and not ch.isspace() and unicodedata.category(ch)[0] != 'C':
            tokens.append(ch)
    words = [w for w, n in sorted(word_counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 2]
    tokens += [w for w in words if len(w) > 1][:3000]
    suffixes = collections.Counter()
    for w in words[:3000]:
        for k in range(2, min(len(w), 5)):
            suffixes['##' + w[-k:]] += 1
    tokens += [s for s, _ in suffixes.most_common(2000)]
    tokens += ['##' + ch for ch, n in char_counts.most_common() if '\u4e00' <= ch <= '\u9fff']
    # like a real vocab, also hold ideographs this corpus never uses (rare ones stay out: [UNK])
    for cp in range(0x4E00, 0x9FA6):
        if chr(cp) not in char_counts:
            tokens += [chr(cp), '##' + chr(cp)]
    seen, vocab = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            vocab.append(t)
    return {t: i for i, t in enumerate(vocab[:size])}


# A small handcrafted vocab exercising every rule.
SMALL_TOKENS = SPECIALS[:1] + ['[unused1]', '[unused2]'] + SPECIALS[100:] + [
    '我', '爱', '北', '京', '天', '安', '门', '年', '中', '国', '语', '言',
    ',', '.', '!', '?', '-', "'", '(', ')', '，', '（', '）', '。', '、',
    'un', '##aff', '##able', 'runn', '##ing', 'hello', 'world', 'hell', '##o', 'e', '##co', '##le',
    'ecole', 'i', 'love', '##s', 'bert', 'BERT', 'Hello', 'H', '##é', '##llo', 'h', 'é', 'a', '##a',
    '2019', '20', '##19', '1', '2', '3', '##4', 'x', '##y', 'naive', 'cafe', 'über', 'uber',
    '😀', 'a😀b', 'ς', 'σ', 'ο', '##σ', '##ς', '##ο', 'δ', '##δ', 'ά',
]
SMALL_VOCAB = {t: i for i, t in enumerate(SMALL_TOKENS)}


def make(do_lower_case=False, vocab=None, **kwargs):
    return Tokenizer(vocab or SMALL_VOCAB, do_lower_case=do_lower_case, **kwargs)


def strip_specials(tokens):
    assert tokens[0] == '[CLS]' and tokens[-1] == '[SEP]'
    return tokens[1:-1]


def read_sentiment_texts(split):
    """Texts of one split (``train``/``valid``/``test``) of the sentiment dataset, or skip."""
    path = os.path.join(SENTIMENT_DIR, 'sentiment.%s.data' % split)
    if not os.path.isfile(path):
        pytest.skip('sentiment dataset not found at %s (it ships with the workplace, not the repo)'
                    % path)
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n').rsplit('\t', 1)[0] for line in f if line.strip()]


@pytest.fixture(scope='module')
def corpus_vocab():
    return build_corpus_vocab(read_sentiment_texts('train'))


# ------------------------------------------------------------------------------------------------
# (a) golden cases, one rule at a time (expected outputs derived by hand from Google's rules)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('do_lower_case, text, expected', [
    # CJK ideographs one per token; unknown ideograph -> [UNK]
    (False, '我爱北京天安门', ['我', '爱', '北', '京', '天', '安', '门']),
    (False, '我爱龙', ['我', '爱', '[UNK]']),
    # numbers stay together, ideographs split off: '2019年'
    (False, '2019年', ['2019', '年']),
    (False, '2019', ['2019']),
    # WordPiece: greedy longest match, ## continuations, whole word -> [UNK] if a piece is missing
    (False, 'unaffable', ['un', '##aff', '##able']),
    (False, 'running', ['runn', '##ing']),
    (False, 'hello', ['hello']),
    (False, 'helloo', ['hello', '##o']),
    (False, 'unaffablez', ['[UNK]']),
    (False, 'xyyy', ['x', '##y', '##y', '##y']),
    (False, '34', ['3', '##4']),
    # English + Chinese mixed, punctuation splits
    (False, '我love中国!', ['我', 'love', '中', '国', '!']),
    (False, "I love BERT.", ['[UNK]', 'love', 'BERT', '.']),
    (True, "I love BERT.", ['i', 'love', 'bert', '.']),
    (False, "don't", ['[UNK]', "'", '[UNK]']),
    # full-width punctuation is punctuation (category P*), each its own token
    (False, '中国，（语言）。', ['中', '国', '，', '（', '语', '言', '）', '。']),
    # hyphen splits words
    (False, 'e-co', ['e', '-', '[UNK]']),
    # accents: stripped only when lower-casing
    (False, 'Héllo', ['H', '##é', '##llo']),
    (True, 'Héllo', ['hello']),
    (True, 'ÉCOLE', ['ecole']),
    (False, 'ÉCOLE', ['[UNK]']),
    (True, 'naïve café Über', ['naive', 'cafe', 'uber']),
    (False, 'über', ['über']),
    # control / format characters are deleted (Cc, Cf), also inside words; U+FFFD and U+0000 too
    (False, 'hel\x00lo', ['hello']),
    (False, 'hel\u200blo', ['hello']),        # ZERO WIDTH SPACE is Cf, not whitespace
    (False, 'hel\ufffdlo', ['hello']),
    (False, 'hel\x7flo', ['hello']),
    (False, '\ufeffhello', ['hello']),       # BOM (Cf)
    # whitespace: \t \n \r, Zs (U+3000 ideographic space, U+00A0) and Python's other separators
    (False, 'hello\tworld\nhello\rworld', ['hello', 'world', 'hello', 'world']),
    (False, 'hello\u3000world\u00a0hello', ['hello', 'world', 'hello']),
    (False, 'hello\u2028world', ['hello', 'world']),  # LINE SEPARATOR (Zl): split() splits on it
    # emoji is So: not punctuation, so it sticks to ASCII letters next to it
    (False, 'a😀b', ['a😀b']),
    (False, '😀', ['😀']),
    (False, '我😀', ['我', '😀']),
    (False, 'x😀', ['[UNK]']),
    # Hangul / kana are not ideographs: no per-character split (unknown here -> one [UNK])
    (False, '한국어', ['[UNK]']),
    (False, 'カタカナ', ['[UNK]']),
    # CJK compatibility ideograph U+F900: split (in range); with lower-casing NFD maps it to U+8C48
    (False, '\uf900', ['[UNK]']),
    # Greek final sigma: lower-casing is context sensitive per word
    (True, 'ΟΔΟΣ', ['ο', '##δ', '##ο', '##ς']),
    (True, 'ΟΣΟ', ['ο', '##σ', '##ο']),
    # empty / whitespace-only / control-only texts
    (False, '', []),
    (False, '   \t\n', []),
    (False, '\x00\u200b', []),
])
def test_golden_tokens(do_lower_case, text, expected):
    tokenizer = make(do_lower_case)
    assert strip_specials(tokenizer.tokenize(text)) == expected
    # the reference agrees with the hand derivation
    assert ReferenceFullTokenizer(SMALL_VOCAB, do_lower_case).tokenize(text) == expected


def test_long_words_become_unk():
    tokenizer = make()
    word = 'a' * 200
    assert strip_specials(tokenizer.tokenize(word)) == ['a'] + ['##a'] * 199
    assert strip_specials(tokenizer.tokenize(word + 'a')) == ['[UNK]']
    assert strip_specials(tokenizer.tokenize('我' + 'a' * 201 + '我')) == ['我', '[UNK]', '我']
    short = make(word_maxlen=3)
    assert strip_specials(short.tokenize('aaa aaaa')) == ['a', '##a', '##a', '[UNK]']


def test_character_predicates():
    assert Tokenizer._is_punctuation('$') and Tokenizer._is_punctuation('^')  # ASCII, not cat P
    assert Tokenizer._is_punctuation('，') and Tokenizer._is_punctuation('《')
    assert not Tokenizer._is_punctuation('😀') and not Tokenizer._is_punctuation('a')
    assert Tokenizer._is_cjk_character('中') and Tokenizer._is_cjk_character('\U00020000')
    assert not Tokenizer._is_cjk_character('한') and not Tokenizer._is_cjk_character('カ')
    assert not Tokenizer._is_cjk_character('，')
    assert Tokenizer._is_space('\u3000') and Tokenizer._is_space('\t')
    assert not Tokenizer._is_space('\u200b')
    assert Tokenizer._is_control('\u200b') and Tokenizer._is_control('\x01')
    assert not Tokenizer._is_control('\n')
    assert Tokenizer.stem('##ing') == 'ing' and Tokenizer.stem('ing') == 'ing'


# ------------------------------------------------------------------------------------------------
# (b) equality with the reference on real and random text
# ------------------------------------------------------------------------------------------------

# Every line of the dataset is compared once, in one of the two modes (the plain reference is slow;
# this keeps the file under 20 s): even train lines uncased, odd train lines + valid + test cased.
@pytest.mark.parametrize('do_lower_case', [True, False])
def test_matches_reference_on_sentiment_corpus(corpus_vocab, do_lower_case):
    tokenizer = Tokenizer(corpus_vocab, do_lower_case=do_lower_case)
    reference = ReferenceFullTokenizer(corpus_vocab, do_lower_case)
    train = read_sentiment_texts('train')
    if do_lower_case:
        texts = train[0::2]
    else:
        texts = train[1::2] + read_sentiment_texts('valid') + read_sentiment_texts('test')
    n_unk = 0
    for text in texts:
        expected = reference.tokenize(text)
        assert tokenizer.tokenize(text)[1:-1] == expected, text
        ids = tokenizer.encode(text)[0]
        assert ids[1:-1] == [corpus_vocab[t] for t in expected], text
        n_unk += expected.count('[UNK]')
    assert n_unk > 0  # the vocab leaves rare characters out, so the [UNK] path is exercised


# Characters chosen to hit every branch: cased letters and final sigma, combining marks (Mn, with
# and without reordering), non-Mn marks with a combining class (U+1D165...), controls, formats,
# separators, ideographs (incl. compatibility and astral), Hangul, punctuation (ASCII and other),
# symbols, digits, chars whose decomposition yields punctuation (U+1FEF -> '`') or changes length.
INTERESTING = (
    'aAzZéÉeEiİıIΣσςΑΟΔ' '\u0301\u0316\u0300\u0345\u0f71\u093c\u094d'
    '\U0001d165\U0001d166\U0001d16d\U0001d16e\u302e\u302f\u0f39'
    '\x00\x01\x1f\x7f\x85\u200b\u200d\ufeff\ufffd\U000e0001'
    ' \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2028\u2029\u3000'
    '我中国\u4e00\u9fff\u3400\uf900\ufa70\U00020000\U0002f800\u2e80\u3005'
    '한카あ'
    '.,!?-\'"()[]{}$^`~，。（）《》、：；“”‘’…—【】～\uff0e\u00a7\u00b6\u037e\u0387'
    '😀★°\u1fef\u1fee\u1fed\u212b\u2126\ufb01'
    '0123456789٣'
)


@pytest.mark.parametrize('do_lower_case', [True, False])
def test_matches_reference_on_random_strings(do_lower_case):
    rng = random.Random(1234)
    pool = list(INTERESTING)
    vocab = dict(SMALL_VOCAB)
    for ch in INTERESTING:  # make most characters and their pieces known so WordPiece runs deep
        for t in (ch, '##' + ch, ch.lower()):
            vocab.setdefault(t, len(vocab))
    tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
    reference = ReferenceFullTokenizer(vocab, do_lower_case)
    for _ in range(3000):
        n = rng.randint(0, 12)
        text = ''.join(
            rng.choice(pool) if rng.random() < 0.8 else chr(rng.randint(0, 0x2FFFF))
            for _ in range(n)
        )
        assert tokenizer.tokenize(text)[1:-1] == reference.tokenize(text), ascii(text)


@pytest.mark.parametrize('do_lower_case', [True, False])
def test_matches_reference_on_every_bmp_code_point(do_lower_case):
    """Every BMP character (plus a stride through the astral planes) between letters and alone."""
    vocab = dict(SMALL_VOCAB)
    tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
    reference = ReferenceFullTokenizer(vocab, do_lower_case)
    code_points = list(range(0x10000)) + list(range(0x10000, 0x110000, 97))
    # alone between letters, next to each other, and between a capital sigma (whose lower-case form
    # depends on the neighbours) and a combining mark (reordering)
    patterns = ['a%sA ', '%s', '\u0391\u03a3%s\u0391 ', '\u03a3\u0301%s\u0316 ']
    for k in range(0, len(code_points), 4096):
        chunk = code_points[k:k + 4096]
        text = ''.join(patterns[i % 4] % chr(c) for i, c in enumerate(chunk))
        assert tokenizer.tokenize(text)[1:-1] == reference.tokenize(text), 'chunk at %x' % chunk[0]


# ------------------------------------------------------------------------------------------------
# (c) encode and truncation
# ------------------------------------------------------------------------------------------------

def bert4keras_truncate(maxlen, index, *sequences):
    """bert4keras truncate_sequences, transcribed (pop one at a time from the longest)."""
    sequences = [s for s in sequences if s]
    while True:
        lengths = [len(s) for s in sequences]
        if sum(lengths) > maxlen:
            i = lengths.index(max(lengths))
            sequences[i].pop(index)
        else:
            return sequences


def test_encode_single_and_pair():
    tok = make()
    v = SMALL_VOCAB
    ids, segs = tok.encode('我爱中国')
    assert ids == [v['[CLS]'], v['我'], v['爱'], v['中'], v['国'], v['[SEP]']]
    assert segs == [0] * 6
    ids, segs = tok.encode('我爱', '中国')
    assert ids == [v['[CLS]'], v['我'], v['爱'], v['[SEP]'], v['中'], v['国'], v['[SEP]']]
    assert segs == [0, 0, 0, 0, 1, 1, 1]
    ids, segs = tok.encode('我爱', '中国', pattern='S*ES*E')
    assert ids == [v['[CLS]'], v['我'], v['爱'], v['[SEP]'], v['[CLS]'], v['中'], v['国'], v['[SEP]']]
    assert segs == [0, 0, 0, 0, 1, 1, 1, 1]
    # empty text is allowed: [CLS] [SEP]
    assert tok.encode('') == ([v['[CLS]'], v['[SEP]']], [0, 0])
    # a token list is accepted like in bert4keras (and not modified)
    tokens = ['[CLS]', '我', '爱', '[SEP]']
    assert tok.encode(tokens, maxlen=3)[0] == [v['[CLS]'], v['我'], v['[SEP]']]
    assert tokens == ['[CLS]', '我', '爱', '[SEP]']
    # unknown words map to the [UNK] id
    assert tok.encode('zzz')[0] == [v['[CLS]'], v['[UNK]'], v['[SEP]']]


def test_encode_truncation_right_and_left():
    tok = make()
    v = SMALL_VOCAB
    ids, segs = tok.encode('我爱北京天安门', maxlen=5)
    assert ids == [v['[CLS]'], v['我'], v['爱'], v['北'], v['[SEP]']]
    ids, _ = tok.encode('我爱北京天安门', maxlen=5, truncate_from='left')
    assert ids == [v['[CLS]'], v['天'], v['安'], v['门'], v['[SEP]']]
    # pair: pops from the longer one; the dropped second [CLS] counts while balancing (bert4keras)
    ids, segs = tok.encode('我爱北京天安门', '中国', maxlen=8)
    assert ids == [v[t] for t in ['[CLS]', '我', '爱', '北', '[SEP]', '中', '国', '[SEP]']]
    assert segs == [0] * 5 + [1] * 3
    # second: 7 -> 6 -> 5 -> 4 tokens (with its [CLS]), then the tie pops from the first
    ids, segs = tok.encode('我爱', '北京天安门', maxlen=6)
    assert ids == [v[t] for t in ['[CLS]', '我', '[SEP]', '北', '京', '[SEP]']]
    # tokenize(maxlen) keeps [CLS]/[SEP]
    assert tok.tokenize('我爱北京', maxlen=3) == ['[CLS]', '我', '[SEP]']
    assert tok.tokenize('我爱北京', maxlen=2) == ['[CLS]', '[SEP]']


def test_encode_truncation_matches_bert4keras_transcription():
    tok = make()
    rng = random.Random(7)
    chars = '我爱北京天安门中国语言'
    for _ in range(400):
        a = ''.join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        b = ''.join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        side = rng.choice(['right', 'left'])
        index = -2 if side == 'right' else 1
        pattern = rng.choice(['S*E*E', 'S*ES*E'])
        maxlen = rng.randint(4, 26)
        ta, tb = tok.tokenize(a), tok.tokenize(b)
        budget = maxlen + (pattern == 'S*E*E')
        ta, tb = bert4keras_truncate(budget, index, ta, tb)
        if pattern == 'S*E*E':
            tb = tb[1:]
        expected = tok.tokens_to_ids(ta + tb)
        ids, segs = tok.encode(a, b, maxlen=maxlen, pattern=pattern, truncate_from=side)
        assert ids == expected and segs == [0] * len(ta) + [1] * len(tb)
        assert len(ids) <= maxlen
        single, _ = tok.encode(a, maxlen=maxlen - 2, truncate_from=side)
        assert single == tok.tokens_to_ids(bert4keras_truncate(maxlen - 2, index, tok.tokenize(a))[0])


def test_custom_special_tokens_and_translate():
    tok = make(token_start=None, token_end='[SEP]')
    assert tok.tokenize('我爱') == ['我', '爱', '[SEP]']
    assert tok.encode('我爱北京', maxlen=3)[0] == [SMALL_VOCAB[t] for t in ['我', '爱', '[SEP]']]
    tok = make(token_translate={'爱': '[unused1]'})
    assert tok.tokenize('我爱') == ['[CLS]', '我', '[unused1]', '[SEP]']
    assert tok.encode('我爱')[0][2] == SMALL_VOCAB['[unused1]']
    assert tok._token_pad_id == 0 and tok._token_mask_id == SMALL_VOCAB['[MASK]']
    assert tok._token_start_id == SMALL_VOCAB['[CLS]'] and tok._token_end_id == SMALL_VOCAB['[SEP]']
    assert tok._token_unk_id == SMALL_VOCAB['[UNK]'] and tok._vocab_size == len(SMALL_VOCAB)


def test_word_caches_are_bounded_and_stay_correct():
    tok = make(do_lower_case=True)
    tok._cache_size = 8  # instance override: clear the caches often
    tok._setup_caches()
    reference = ReferenceFullTokenizer(SMALL_VOCAB, True)
    rng = random.Random(3)
    for _ in range(300):
        text = ' '.join(''.join(rng.choice('abexyo') for _ in range(rng.randint(1, 6)))
                        for _ in range(rng.randint(1, 8))) + '我' + 'ΟΔΟΣ'
        assert tok.tokenize(text)[1:-1] == reference.tokenize(text)
        assert tok.encode(text)[0][1:-1] == [SMALL_VOCAB[t] for t in reference.tokenize(text)]
        assert len(tok._pieces) <= 8 and len(tok._piece_ids) <= 8


def test_ids_tokens_decode_and_pickle():
    tok = make(do_lower_case=True)
    ids = tok.encode('我爱 hello, world! I love BERT 2019年')[0]
    tokens = tok.ids_to_tokens(ids)
    assert tokens == tok.tokenize('我爱 hello, world! I love BERT 2019年')
    assert tok.tokens_to_ids(tokens) == ids
    assert tok.id_to_token(tok.token_to_id('中')) == '中'
    assert tok.token_to_id('not-a-token') == SMALL_VOCAB['[UNK]']
    assert tok.decode(ids) == '我爱hello, world! i love bert 2019年'
    assert tok.decode(tok.encode('我爱北京，天安门。')[0]) == '我爱北京，天安门。'
    assert tok.decode(None, tokens=['un', '##aff', '##able', 'runn', '##ing']) == 'unaffable running'
    assert tok.decode(tok.tokens_to_ids(['3', '.', '1', '(', 'a', ')'])) == '3.1(a)'
    with pytest.raises(KeyError, match='not in the vocabulary'):
        tok.id_to_token(10 ** 6)
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode('我爱 hello')[0] == tok.encode('我爱 hello')[0]


# ------------------------------------------------------------------------------------------------
# (d) rematch
# ------------------------------------------------------------------------------------------------

def test_rematch_basic_and_specials():
    tok = make()
    text = '我爱 hello，world'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', '我', '爱', 'hello', '，', 'world', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0], [1], [3, 4, 5, 6, 7], [8], [9, 10, 11, 12, 13], []]
    # ## pieces map to their own characters; whitespace and controls are skipped
    text = ' \tun\x00affable\u200b 我'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', 'un', '##aff', '##able', '我', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [2, 3], [5, 6, 7], [8, 9, 10, 11], [14], []]


def test_rematch_lower_case_and_accents():
    tok = make(do_lower_case=True)
    text = 'ÉCOLE'
    assert tok.tokenize(text) == ['[CLS]', 'ecole', '[SEP]']
    assert tok.rematch(text, tok.tokenize(text)) == [[], [0, 1, 2, 3, 4], []]
    # decomposed input: 'E' + U+0301 (combining acute) counts as one original char each
    text = 'E\u0301COLE'
    assert tok.rematch(text, tok.tokenize(text)) == [[], [0, 2, 3, 4, 5], []]
    # 'İ' lower-cases to two characters, 'i' + U+0307; the dot is stripped, so 'İ' -> 'i'
    text = 'İ love ÉCOLE'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', 'i', 'love', 'ecole', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0], [2, 3, 4, 5], [7, 8, 9, 10, 11], []]
    # Héllo -> hello with accents gone
    text = 'Héllo 我'
    assert tok.rematch(text, tok.tokenize(text)) == [[], [0, 1, 2, 3, 4], [6], []]
    # Greek final sigma is lower-cased in context
    text = 'ΟΔΟΣ'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', 'ο', '##δ', '##ο', '##ς', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0], [1], [2], [3], []]


def test_rematch_unk_skips_the_replaced_word():
    tok = make()
    # 'bab' is unknown -> [UNK], mapped to the word it replaced; the following 'a' must map to the
    # real 'a', not the one inside
    text = 'bab a 龙我'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', '[UNK]', 'a', '[UNK]', '我', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0, 1, 2], [4], [6], [7], []]
    # truncated tokens still align
    tokens = tok.tokenize('我爱北京天安门', maxlen=4)
    assert tok.rematch('我爱北京天安门', tokens) == [[], [0], [1], []]


def reference_offsets(text, reference):
    """Tokens of ``text`` with the original indices of their characters, tracked char by char.

    An independent way to the answer ``rematch`` should give: normalise each character on its own
    (valid for texts without Greek capital sigma or reorderable non-Mn marks), build Google's basic
    words remembering where every character came from, then cut the origins along the WordPiece
    pieces. ``[UNK]`` gets every original index from its word's first character up to the next
    character that survives normalisation (so characters dropped inside or after the word count).
    """
    events = []  # origin of every character the normalised text has, whitespace included
    words, current = [], None

    def new_word(c, i):
        events.append(i)
        word = ([c], [i], [len(events) - 1])  # chars, origins, event numbers
        words.append(word)
        return word

    for i, ch in enumerate(text):
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or ref_is_control(ch):
            continue
        if ref_is_whitespace(ch):
            events.append(i)
            current = None
            continue
        piece = reference.strip_accents(ch.lower()) if reference.do_lower_case else ch
        if ref_is_chinese_char(cp):
            if piece:
                word = new_word(piece[0], i)
                for c in piece[1:]:
                    events.append(i)
                    word[0].append(c)
                    word[1].append(i)
                    word[2].append(len(events) - 1)
            current = None
            continue
        for c in piece:
            if ref_is_punctuation(c):
                new_word(c, i)
                current = None
            elif c.isspace():
                events.append(i)
                current = None
            elif current is None:
                current = new_word(c, i)
            else:
                events.append(i)
                current[0].append(c)
                current[1].append(i)
                current[2].append(len(events) - 1)
    tokens, offsets = [], []
    for chars, origins, numbers in words:
        word = ''.join(chars)
        start = 0
        for token in reference.wordpiece(word):
            tokens.append(token)
            if token == reference.unk:
                stop = events[numbers[-1] + 1] if numbers[-1] + 1 < len(events) else len(text)
                offsets.append(list(range(origins[0], max(stop, origins[-1] + 1))))
            else:
                n = len(Tokenizer.stem(token))
                offsets.append(list(origins[start:start + n]))
                start += n
    return tokens, offsets


def test_rematch_matches_char_by_char_reference():
    rng = random.Random(2024)
    pool = 'aAbBéÉİ\u0301\u0316我中龙\uf900\U00020000 \t\u3000\u200b\x00\ufffd，.!-한😀012xyzſ\u1fef'
    vocab = dict(SMALL_VOCAB)
    for ch in 'aAéÉ我中\uf900\u8c48，.!0xyz':  # leave b, 龙, 한 ... out so [UNK] happens
        for t in (ch, '##' + ch, ch.lower()):
            vocab.setdefault(t, len(vocab))
    for do_lower_case in (True, False):
        tok = Tokenizer(vocab, do_lower_case=do_lower_case)
        reference = ReferenceFullTokenizer(vocab, do_lower_case)
        for _ in range(2000):
            text = ''.join(rng.choice(pool) for _ in range(rng.randint(0, 14)))
            tokens, offsets = reference_offsets(text, reference)
            assert tokens == reference.tokenize(text), ascii(text)  # the helper itself is right
            assert tok.tokenize(text) == ['[CLS]'] + tokens + ['[SEP]']
            assert tok.rematch(text, tok.tokenize(text)) == [[]] + offsets + [[]], ascii(text)


def test_rematch_round_trip_on_random_text():
    """Every non-special token's mapped characters normalise back to the token's stem."""
    rng = random.Random(99)
    pool = 'aAéÉΣΟΔİ\u0301\u0316\U0001d165\U0001d16d我中\uf900 \t\u200b\x00，.!한😀012'
    vocab = dict(SMALL_VOCAB)
    for ch in pool:
        for t in (ch, '##' + ch, ch.lower()):
            vocab.setdefault(t, len(vocab))
    for do_lower_case in (True, False):
        tok = Tokenizer(vocab, do_lower_case=do_lower_case)
        ref = ReferenceFullTokenizer(vocab, do_lower_case)
        for _ in range(1500):
            text = ''.join(rng.choice(pool) for _ in range(rng.randint(0, 10)))
            tokens = tok.tokenize(text)
            mapping = tok.rematch(text, tokens)
            assert len(mapping) == len(tokens)
            for token, idx in zip(tokens, mapping):
                if token == '[UNK]':
                    assert idx, ascii(text)  # the characters of the word it replaced
                    continue
                if token.startswith('['):
                    assert idx == []
                    continue
                assert idx, (ascii(text), token)
                # the original characters of a token, tokenized alone, contain its stem (up to
                # the final-sigma form, which depends on characters outside the span)
                span = text[min(idx):max(idx) + 1]
                alone = ''.join(ref.basic_tokenize(span)).replace('ς', 'σ')
                assert Tokenizer.stem(token).replace('ς', 'σ') in alone, ascii(text)


# ------------------------------------------------------------------------------------------------
# (e) vocabulary files
# ------------------------------------------------------------------------------------------------

def test_load_vocab_plain_and_simplified(tmp_path):
    tokens = ['[PAD]', '[unused1]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
              '的', '##的', 'a', '##a', 'hello', '##ing', '...', '，', '##，', '中国', 'x-y', '##', '!']
    path = tmp_path / 'vocab.txt'
    path.write_text('\n'.join(tokens) + '\n', encoding='utf-8')
    assert load_vocab(str(path)) == {t: i for i, t in enumerate(tokens)}
    new_dict, keep = load_vocab(path, simplified=True,
                                startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'])
    # by hand: specials first in the given order; then in id order, keep 1-char tokens and
    # multi-char tokens whose stem has no ideograph and no punctuation:
    # '[unused1]' ('[' is punct) X, '的' ok, '##的' X, 'a' ok, '##a' ok, 'hello' ok, '##ing' ok,
    # '...' X, '，' ok (1 char), '##，' X, '中国' X, 'x-y' X, '##' ok (empty stem), '!' ok
    expected_tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '的', 'a', '##a', 'hello',
                       '##ing', '，', '##', '!']
    assert new_dict == {t: i for i, t in enumerate(expected_tokens)}
    assert keep == [0, 2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 17, 18]
    # save_vocab writes in id order; reading back gives the same dict
    out = tmp_path / 'small.txt'
    save_vocab(str(out), new_dict)
    assert load_vocab(str(out)) == new_dict
    tok = Tokenizer(str(out))
    assert tok.encode('的a')[0] == [2, 5, 6, 3]


def test_load_vocab_token_count_lines_and_duplicates(tmp_path):
    path = tmp_path / 'vocab.txt'
    path.write_text('[PAD]\n[UNK] 10\nab\t3\n\nab\n', encoding='utf-8')
    # first field of each line; a blank line is the token ''; a duplicate keeps the later line id
    assert load_vocab(str(path)) == {'[PAD]': 0, '[UNK]': 1, 'ab': 4, '': 3}


# ------------------------------------------------------------------------------------------------
# (f) pre_tokenize (WoBERT)
# ------------------------------------------------------------------------------------------------

def test_pre_tokenize_with_fake_splitter():
    vocab = dict(SMALL_VOCAB)
    vocab['北京'] = len(vocab)
    vocab['天安门'] = len(vocab)
    seen = []

    def splitter(text):
        seen.append(text)
        return ['我', '爱', '北京', '天安门', '中国', ' ', 'hello', 'world!']

    tok = Tokenizer(vocab, do_lower_case=True, pre_tokenize=splitter)
    tokens = tok.tokenize('我爱北京天安门中国 Hello World!')
    # in-vocab words whole; '中国' not in vocab -> char tokens; 'world!' -> 'world', '!'
    assert tokens == ['[CLS]', '我', '爱', '北京', '天安门', '中', '国', 'hello', 'world', '!', '[SEP]']
    assert seen == ['我爱北京天安门中国 hello world!']  # lower-cased before pre-tokenizing
    assert tok.encode('我爱北京天安门中国 Hello World!')[0] == tok.tokens_to_ids(tokens)
    assert tok.rematch('我爱北京天安门中国 Hello World!', tokens) == [
        [], [0], [1], [2, 3], [4, 5, 6], [7], [8], [10, 11, 12, 13, 14], [16, 17, 18, 19, 20],
        [21], []]


def test_pre_tokenize_with_jieba():
    jieba = pytest.importorskip('jieba')
    vocab = dict(SMALL_VOCAB)
    for w in ['北京', '天安门', '中国']:
        vocab[w] = len(vocab)
    tok = Tokenizer(vocab, pre_tokenize=lambda s: jieba.cut(s, HMM=False))
    tokens = tok.tokenize('我爱北京天安门')
    assert tokens == ['[CLS]', '我', '爱', '北京', '天安门', '[SEP]']
    assert tok.rematch('我爱北京天安门', tokens) == [[], [0], [1], [2, 3], [4, 5, 6], []]


# ------------------------------------------------------------------------------------------------
# (g) errors
# ------------------------------------------------------------------------------------------------

def test_error_missing_vocab_file(tmp_path):
    missing = str(tmp_path / 'nope' / 'vocab.txt')
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        Tokenizer(missing)
    with pytest.raises(FileNotFoundError, match='vocab.txt'):
        load_vocab(missing)


def test_error_missing_special_tokens(tmp_path):
    vocab = {t: i for i, t in enumerate(['[PAD]', '[UNK]', '[CLS]', 'a'])}
    # a missing start/end token is accepted as in bert4keras (encoded as [UNK]), with a warning
    with pytest.warns(UserWarning, match=r"end token '\[SEP\]'"):
        assert Tokenizer(vocab).encode('a')[0] == [2, 3, 1]
    # no [UNK]: built as in bert4keras (whose chess example then sets _token_unk_id); an unknown token errors
    with pytest.raises(ValueError, match=r"unk token '\[UNK\]'"):
        Tokenizer({'[CLS]': 0, '[SEP]': 1}).encode('x')
    # None disables a special token; a missing pad/mask is fine (id None)
    tok = Tokenizer(vocab, token_end=None)
    assert tok._token_mask_id is None and tok.tokenize('a') == ['[CLS]', 'a']
    path = tmp_path / 'v.txt'
    path.write_text('[CLS]\n[SEP]\n[UNK]\n', encoding='utf-8')
    with pytest.raises(ValueError, match="'x'"):
        load_vocab(str(path), simplified=True, startswith=['[CLS]', 'x'])


def test_error_bad_inputs():
    tok = make()
    for bad in (None, 123, b'bytes', ['ok', 3]):
        with pytest.raises(TypeError, match='str'):
            tok.encode(bad)
    with pytest.raises(TypeError, match='second_text'):
        tok.encode('我', 5)
    with pytest.raises(TypeError):
        tok.tokenize(None)
    with pytest.raises(ValueError, match='minimum is 2'):
        tok.encode('我爱', maxlen=1)
    with pytest.raises(ValueError, match='minimum is 3'):
        tok.encode('我', '爱', maxlen=2)
    with pytest.raises(ValueError, match='minimum is 4'):
        tok.encode('我', '爱', maxlen=3, pattern='S*ES*E')
    with pytest.raises(ValueError, match='minimum is 2'):
        tok.tokenize('我爱', maxlen=1)
    with pytest.raises(ValueError, match='pattern'):
        tok.encode('我', '爱', pattern='SE')
    with pytest.raises(ValueError, match='truncate_from'):
        tok.encode('我爱', maxlen=3, truncate_from='middle')
    with pytest.raises(ValueError, match='not found'):
        tok.rematch('我爱', ['[CLS]', '中', '[SEP]'])
    with pytest.raises(TypeError, match='pre_tokenize'):
        Tokenizer(SMALL_VOCAB, pre_tokenize='jieba')
