"""Tokenizer throughput: ``Tokenizer.encode(text, maxlen=512)`` over every line of a corpus.

    python benchmarks/bench_tokenizer.py                  # sentiment train split, uncased
    python benchmarks/bench_tokenizer.py --data my.tsv --cased --runs 5

The corpus is ``text<TAB>label`` per line (only the text is used). By default it is the sentiment
train split at ``../shared/datasets/sentiment/sentiment.train.data`` relative to the repository root;
when that file is missing, synthetic mixed Chinese/English text is generated instead (and the
output says so, since the numbers are then not comparable).

The vocabulary is built from the corpus to look like Google's Chinese vocab (~21k entries): special
tokens, ``[unused1..99]``, the characters seen at least twice, frequent lower-case English words,
common ``##`` suffixes and ``##`` + ideograph continuations. Characters seen once are left out so
the ``[UNK]`` path runs too.

Each timed run builds a fresh ``Tokenizer`` (empty per-word caches), so a run is one cold pass over
the data, as in the first epoch of training. The per-character tables are process-wide and warm
after the first run; the first run's time is printed separately. Reported: lines/s of the best run,
and the total number of tokens. Timings are never asserted in tests (see DESIGN.md).
"""
import argparse
import collections
import os
import random
import re
import sys
import time
import unicodedata

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402

DEFAULT_DATA = os.path.join(
    os.path.dirname(REPO_ROOT), 'shared', 'datasets', 'sentiment', 'sentiment.train.data'
)
SPECIALS = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]']


def build_corpus_vocab(texts, size=21128, min_char_count=2):
    """A Google-Chinese-like ``{token: id}`` vocabulary (``size`` entries at most) from ``texts``."""
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


def synthetic_texts(n_lines=16883, seed=0):
    """Mixed Chinese/English review-like lines (~100 characters each) for when the data is absent."""
    rng = random.Random(seed)
    hanzi = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    english = ['good', 'hotel', 'room', 'service', 'the', 'is', 'not', 'very', 'nice', 'price',
               'iPhone', 'WiFi', 'OK', 'Booking', 'check-in', 'location', 'staff', 'breakfast']
    punct = ['，', '。', '！', '？', ',', '.', '!', '~', '、', '（', '）', ' ']
    lines = []
    for _ in range(n_lines):
        parts = []
        while sum(map(len, parts)) < rng.randint(30, 170):
            r = rng.random()
            if r < 0.75:
                parts.append(''.join(rng.choice(hanzi) for _ in range(rng.randint(1, 8))))
            elif r < 0.85:
                parts.append(' ' + rng.choice(english) + ' ')
            elif r < 0.9:
                parts.append(str(rng.randint(0, 3000)))
            else:
                parts.append(rng.choice(punct))
        lines.append(''.join(parts))
    return lines


def read_texts(path):
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n').rsplit('\t', 1)[0] for line in f if line.strip()]


def time_one_pass(vocab, texts, do_lower_case, maxlen):
    """Seconds for one cold pass (fresh tokenizer) and the number of tokens produced."""
    tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
    encode = tokenizer.encode
    start = time.perf_counter()
    n_tokens = 0
    for text in texts:
        n_tokens += len(encode(text, maxlen=maxlen)[0])
    return time.perf_counter() - start, n_tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', default=DEFAULT_DATA, help='text<TAB>label file (default: %(default)s)')
    parser.add_argument('--cased', action='store_true', help='do_lower_case=False (default: uncased)')
    parser.add_argument('--runs', type=int, default=3, help='timed passes; the best is reported')
    parser.add_argument('--maxlen', type=int, default=512)
    args = parser.parse_args(argv)

    if os.path.isfile(args.data):
        texts = read_texts(args.data)
        source = args.data
    else:
        texts = synthetic_texts()
        source = 'SYNTHETIC mixed Chinese/English text (%s not found)' % args.data
        print('note: %s; figures are not comparable with the sentiment corpus' % source)

    vocab = build_corpus_vocab(texts)
    do_lower_case = not args.cased
    print('data: %s' % source)
    print('lines: %d, characters: %d, vocab: %d tokens, do_lower_case=%s, maxlen=%d'
          % (len(texts), sum(map(len, texts)), len(vocab), do_lower_case, args.maxlen))

    times = []
    for run in range(args.runs):
        seconds, n_tokens = time_one_pass(vocab, texts, do_lower_case, args.maxlen)
        times.append(seconds)
        print('run %d: %.3f s, %.0f lines/s%s'
              % (run + 1, seconds, len(texts) / seconds,
                 ' (process-wide character tables cold)' if run == 0 else ''))
    best = min(times)
    print('total tokens: %d' % n_tokens)
    print('best of %d: %.0f lines/s (%.0f characters/s)'
          % (args.runs, len(texts) / best, sum(map(len, texts)) / best))
    return {'lines_per_s': len(texts) / best, 'chars_per_s': sum(map(len, texts)) / best, 'tokens': n_tokens,
            'source': source}


if __name__ == '__main__':
    main()
