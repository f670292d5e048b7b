"""bert4keras 0.11.5 ``tokenizers`` compatibility: public names, TokenizerBase, vocabularies without
[CLS]/[SEP], rematch of [UNK] tokens, and clear errors for badly encoded vocabulary files.

Expected values are hand-computed (or read off bert4keras' source, cited where used).
"""
import warnings

import pytest

from bert4keras_ext import tokenizers
from bert4keras_ext.tokenizers import Tokenizer, TokenizerBase, load_vocab

# Every public name of bert4keras 0.11.5's bert4keras/tokenizers.py (from its source: its classes
# and functions, and the snippets helpers it imports), except SpTokenizer (SentencePiece models
# are out of scope here).
BERT4KERAS_TOKENIZERS_NAMES = [
    'TokenizerBase', 'Tokenizer', 'convert_to_unicode', 'is_string', 'load_vocab',
    'lowercase_and_normalize', 'open', 'save_vocab', 'truncate_sequences', 'is_py2',
]

VOCAB_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused1]', '我', '爱', '你', '北',
                '京', 'hello', 'world', 'cafe', 'ecole', 'a', '##b', 'love', ',', '.']
VOCAB = {t: i for i, t in enumerate(VOCAB_TOKENS)}


def test_every_bert4keras_tokenizers_name_is_importable():
    missing = [name for name in BERT4KERAS_TOKENIZERS_NAMES if not hasattr(tokenizers, name)]
    assert missing == []
    assert tokenizers.lowercase_and_normalize('ÉCOLE') == 'ecole'
    assert tokenizers.is_string('x') and not tokenizers.is_string(b'x')
    tokens = ['[CLS]', 'a', 'b', 'c', '[SEP]']
    tokenizers.truncate_sequences(4, -2, tokens)
    assert tokens == ['[CLS]', 'a', 'b', '[SEP]']
    assert isinstance(Tokenizer(VOCAB), TokenizerBase)


# ----------------------------------------------------------------------------- TokenizerBase

class CharTokenizer(TokenizerBase):
    """A user subclass in the bert4keras style: one token per character."""

    def __init__(self, vocab, **kwargs):
        super().__init__(**kwargs)
        self.vocab = vocab
        self.inv = {i: t for t, i in vocab.items()}

    def _tokenize(self, text):
        return [ch for ch in text if not ch.isspace()]

    def token_to_id(self, token):
        return self.vocab.get(token, self.vocab['[UNK]'])

    def id_to_token(self, i):
        return self.inv[i]

    def decode(self, ids):
        return ''.join(t for t in self.ids_to_tokens(ids) if t[0] != '[')


def test_tokenizer_base_subclass():
    tok = CharTokenizer(VOCAB)
    assert (tok._token_pad, tok._token_unk, tok._token_mask) == ('[PAD]', '[UNK]', '[MASK]')
    assert tok.tokenize('我爱 你') == ['[CLS]', '我', '爱', '你', '[SEP]']
    assert tok.tokenize('我爱北京', maxlen=4) == ['[CLS]', '我', '爱', '[SEP]']
    ids, segments = tok.encode('我爱', '北京')
    assert ids == [2, 6, 7, 3, 9, 10, 3] and segments == [0, 0, 0, 0, 1, 1, 1]
    # maxlen 6 for the pair: pop from the longer (first on ties) before its [SEP]
    # (budget 7 counting the second [CLS]: 5 + 4 -> pop 你 from the first, then on the 4/4 tie
    # 爱 from the first again)
    ids, segments = tok.encode('我爱你', '北京', maxlen=6)
    assert ids == [2, 6, 3, 9, 10, 3] and segments == [0, 0, 0, 1, 1, 1]
    ids, _ = tok.encode('我爱你', maxlen=4, truncate_from='left')
    assert ids == [2, 7, 8, 3]
    assert tok.encode('我爱', '你', pattern='S*ES*E')[0] == [2, 6, 7, 3, 2, 8, 3]
    assert tok.encode('我?')[0] == [2, 6, 1, 3]  # unknown character -> [UNK] id
    assert tok.decode([2, 6, 7, 3]) == '我爱'
    # a token list is used as given (start/end included)
    assert tok.encode(['[CLS]', '爱', '[SEP]'])[0] == [2, 7, 3]
    # token_start / token_end None, and token_translate
    bare = CharTokenizer(VOCAB, token_start=None, token_end=None, token_translate={'你': '[MASK]'})
    assert bare.tokenize('我你') == ['我', '[MASK]'] and bare.encode('我你')[0] == [6, 4]
    assert bare._token_translate_inv == {'[MASK]': '你'}
    with pytest.raises(ValueError, match='minimum is 2'):
        tok.encode('我爱', maxlen=1)
    with pytest.raises(ValueError, match='pattern'):
        tok.encode('我', '爱', pattern='SE')
    with pytest.raises(TypeError, match='first_text'):
        tok.encode(5)


def test_tokenizer_base_methods_to_implement():
    base = TokenizerBase()
    for call in (lambda: base.tokenize('x'), lambda: base.token_to_id('x'),
                 lambda: base.id_to_token(0), lambda: base.decode([0])):
        with pytest.raises(NotImplementedError, match='must implement'):
            call()


# ----------------------------------------------------------------------------- special tokens

def test_vocabulary_without_cls_and_sep_behaves_like_bert4keras():
    # bert4keras 0.11.5: Tokenizer.__init__ sets _token_start_id only when '[CLS]' is in the
    # vocabulary, tokenize() still inserts '[CLS]', and token_to_id('[CLS]') falls back to [UNK].
    vocab = {t: i for i, t in enumerate(['[PAD]', '[UNK]', '我', '爱'])}
    with pytest.warns(UserWarning) as record:
        tok = Tokenizer(vocab)
    messages = ' '.join(str(w.message) for w in record)
    assert "'[CLS]'" in messages and "'[SEP]'" in messages and 'token_start=None' in messages
    assert tok._token_start_id is None and tok._token_end_id is None
    assert tok.tokenize('我爱') == ['[CLS]', '我', '爱', '[SEP]']
    assert tok.encode('我爱') == ([1, 2, 3, 1], [0, 0, 0, 0])
    assert tok.encode('我爱', maxlen=3)[0] == [1, 2, 1]
    assert tok.decode([1, 2, 3, 1]) == '我爱'
    # token_start=None / token_end=None: nothing is added, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        bare = Tokenizer(vocab, token_start=None, token_end=None)
    assert bare.tokenize('我爱') == ['我', '爱'] and bare.encode('我爱') == ([2, 3], [0, 0])
    assert bare.encode('我', '爱') == ([2, 3], [0, 1])
    assert bare.rematch('我爱', bare.tokenize('我爱')) == [[0], [1]]
    # no [UNK]: built as in bert4keras (its chess example then sets _token_unk_id); an unknown token errors
    with pytest.raises(ValueError, match="unk token"):
        Tokenizer({'我': 0}, token_start=None, token_end=None).encode('你')


# ----------------------------------------------------------------------------- rematch

def span(text, mapping, head, tail):
    """GPLinker's way of reading an entity from token positions."""
    return text[mapping[head][0]:mapping[tail][-1] + 1]


def test_rematch_maps_unk_to_the_replaced_word():
    tok = Tokenizer(VOCAB)
    # an emoji, a rare CJK ideograph (U+20000, outside the vocabulary) and an OOV Latin word
    text = '我😀爱\U00020000你 hello zzz world'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', '我', '[UNK]', '爱', '[UNK]', '你', 'hello', '[UNK]', 'world',
                      '[SEP]']
    mapping = tok.rematch(text, tokens)
    assert mapping == [[], [0], [1], [2], [3], [4], [6, 7, 8, 9, 10], [12, 13, 14],
                       [16, 17, 18, 19, 20], []]
    assert span(text, mapping, 2, 2) == '😀'
    assert span(text, mapping, 4, 4) == '\U00020000'
    assert span(text, mapping, 6, 8) == 'hello zzz world'
    assert span(text, mapping, 1, 5) == '我😀爱\U00020000你'
    # Google replaces the whole word when one piece is missing: 'a😀b' is one [UNK]
    text = 'a😀b ab'
    assert tok.tokenize(text) == ['[CLS]', '[UNK]', 'a', '##b', '[SEP]']
    assert tok.rematch(text, tok.tokenize(text)) == [[], [0, 1, 2], [4], [5], []]
    # ids stay Google-exact: the [UNK] id
    assert tok.encode('我😀')[0] == [2, 6, 1, 3]
    # only real special tokens map to nothing
    tokens = ['[CLS]', '我', '[MASK]', '[unused1]', '[SEP]', '[PAD]']
    assert tok.rematch('我😀', tokens) == [[], [0], [], [], [], []]


def test_rematch_unk_with_lower_case_and_accents():
    tok = Tokenizer(VOCAB, do_lower_case=True)
    text = 'Café ÉCOLE Naïve, LOVE'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', 'cafe', 'ecole', '[UNK]', ',', 'love', '[SEP]']
    mapping = tok.rematch(text, tokens)
    assert mapping == [[], [0, 1, 2, 3], [5, 6, 7, 8, 9], [11, 12, 13, 14, 15], [16],
                       [18, 19, 20, 21], []]
    assert span(text, mapping, 3, 3) == 'Naïve'
    # decomposed accent (e + U+0301) and a zero-width space inside / after the unknown word: all
    # original characters belong to it, though normalisation drops them
    text = 'cafe\u0301s\u200b love zzze\u0301'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', '[UNK]', 'love', '[UNK]', '[SEP]']
    mapping = tok.rematch(text, tokens)
    assert mapping == [[], [0, 1, 2, 3, 4, 5, 6], [8, 9, 10, 11], [13, 14, 15, 16, 17], []]
    assert span(text, mapping, 3, 3) == 'zzze\u0301'


def test_rematch_unk_with_truncation_and_pre_tokenize():
    tok = Tokenizer(VOCAB)
    text = 'zzz 我爱你'
    tokens = tok.tokenize(text, maxlen=4)
    assert tokens == ['[CLS]', '[UNK]', '我', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0, 1, 2], [4], []]
    # a pre_tokenize word cut inside a basic word: the [UNK] covers only its own part
    tok = Tokenizer(VOCAB, pre_tokenize=lambda s: ['zz', 'hello', ' ', '我'])
    text = 'zzhello 我'
    tokens = tok.tokenize(text)
    assert tokens == ['[CLS]', '[UNK]', 'hello', '我', '[SEP]']
    assert tok.rematch(text, tokens) == [[], [0, 1], [2, 3, 4, 5, 6], [8], []]


# ----------------------------------------------------------------------------- vocabulary files

def test_vocab_file_with_bad_bytes_names_file_and_line(tmp_path):
    path = tmp_path / 'vocab.txt'
    path.write_bytes('[PAD]\n[UNK]\n[CLS]\n'.encode('utf-8') + b'\xd6\xd0\n' + b'[SEP]\n')
    for load in (lambda: load_vocab(str(path)), lambda: Tokenizer(str(path))):
        with pytest.raises(ValueError) as error:
            load()
        message = str(error.value)
        assert str(path) in message and 'line 4' in message and 'utf-8' in message
        assert not isinstance(error.value, UnicodeDecodeError)
    # a large file: the bad line is found beyond the first read chunk, with \r\n line ends
    lines = ['tok%d' % i for i in range(5000)]
    path.write_bytes('\r\n'.join(lines).encode('utf-8') + b'\r\n\xff\r\n')
    with pytest.raises(ValueError, match='line 5001 '):
        load_vocab(str(path))
    # the right encoding reads it
    path.write_bytes('[UNK]\n中\n'.encode('gbk'))
    assert load_vocab(str(path), encoding='gbk') == {'[UNK]': 0, '中': 1}
