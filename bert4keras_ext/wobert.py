"""WoBERT: word-level Chinese BERT (kexue.fm/archives/7758) — tokenizer and vocabulary helpers.

WoBERT checkpoints have BERT's layout (`model='wobert'` builds a BERT); what differs is the vocabulary,
which holds frequent Chinese *words* besides characters, and the tokenizer, which first cuts text into
words with jieba (HMM off) and keeps a word whole when the vocabulary has it::

    from bert4keras_ext.wobert import wobert_tokenizer
    tokenizer = wobert_tokenizer('chinese_wobert_L-12_H-768_A-12/vocab.txt')
    model = build_transformer_model(config_path, checkpoint_path, model='wobert')

To turn a character-level checkpoint into a word-level one (how WoBERT itself was started), append
words to the vocabulary and initialise each new row as the mean of its characters' rows::

    token_dict, keep_tokens = load_vocab(dict_path, simplified=True, startswith=[...])
    token_dict, new_words = extend_vocab(token_dict, words)
    compound_tokens = word_compound_tokens(Tokenizer(token_dict, do_lower_case=True), new_words)
    model = build_transformer_model(config, ckpt, keep_tokens=keep_tokens, compound_tokens=compound_tokens)

jieba is an optional dependency (`pip install "bert4keras_ext[wobert]"`).
"""
from bert4keras_ext.tokenizers import Tokenizer

__all__ = ['JiebaPreTokenizer', 'wobert_tokenizer', 'extend_vocab', 'word_compound_tokens']


def _import_jieba():
    try:
        import jieba
    except ImportError as e:
        raise ImportError(
            "WoBERT's word-level tokenization needs jieba, which is not installed. Install it with "
            "pip install \"bert4keras_ext[wobert]\" (or pip install jieba)."
        ) from e
    return jieba


class JiebaPreTokenizer:
    """Callable `text -> list of words` with jieba, HMM off by default (WoBERT's setting).

    HMM=False makes the cut depend only on jieba's dictionary, so the same text always splits the
    same way (new-word discovery by the HMM would create words the vocabulary cannot know).
    A class rather than a lambda so that tokenizers using it can be pickled (e.g. for multiprocessing).
    """

    def __init__(self, hmm=False):
        self.hmm = hmm
        self._jieba = None

    def __call__(self, text):
        if self._jieba is None:
            self._jieba = _import_jieba()
            self._jieba.setLogLevel(60)  # silence "Building prefix dict..." on first use
        return list(self._jieba.cut(text, HMM=self.hmm))

    def __getstate__(self):
        return {'hmm': self.hmm, '_jieba': None}


def wobert_tokenizer(token_dict_or_path, do_lower_case=True, hmm=False, **kwargs):
    """A `Tokenizer` with WoBERT's settings: lower-casing and jieba word pre-tokenization.

    Words in the vocabulary become single tokens; any other word falls back to the normal
    character/WordPiece tokenization.
    """
    _import_jieba()  # fail now, with the install hint, rather than at the first encode
    return Tokenizer(token_dict_or_path, do_lower_case=do_lower_case, pre_tokenize=JiebaPreTokenizer(hmm),
                     **kwargs)


def extend_vocab(token_dict, words):
    """Append the `words` not yet in `token_dict`; returns (new token_dict, list of appended words).

    Ids of existing tokens are unchanged; new words get the next ids in the order given.
    """
    new_dict = dict(token_dict)
    added = []
    for word in words:
        if not word or word in new_dict:
            continue
        new_dict[word] = len(new_dict)
        added.append(word)
    return new_dict, added


def word_compound_tokens(char_tokenizer, words):
    """`compound_tokens` for `build_transformer_model`: each word's character-level token ids.

    `char_tokenizer` must tokenize without word pre-tokenization (a plain `Tokenizer`) over the
    vocabulary *before* the words were appended, so each word maps to the ids of its pieces; the new
    embedding row is then the mean of those rows (WoBERT's initialisation).
    """
    compound = []
    for word in words:
        ids = char_tokenizer.encode(word)[0][1:-1]
        if not ids or all(i == char_tokenizer._token_unk_id for i in ids):
            raise ValueError('word %r has no known characters in the base vocabulary; cannot initialise '
                             'its embedding from them' % word)
        compound.append(ids)
    return compound
