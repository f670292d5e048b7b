"""The package's main job, end to end, in about a minute on 2 CPU cores:

1. write a tiny BERT checkpoint in Google's format (bert_model.ckpt + bert_config.json + vocab.txt);
2. load it and adapt it to the task's text with a short masked-LM run, then save it back in Google's
   format (`save_weights_as_checkpoint`) — the path a user takes with their own pre-training;
3. load that checkpoint, fine-tune a sentiment classifier on [CLS] and evaluate accuracy;
4. decode: show the masked-LM predictions for a masked sentence, and classify a few new sentences.

    python -m bert4keras_ext demo                       # generated Chinese reviews (embedded task)
    python -m bert4keras_ext demo --data-dir DIR        # DIR/sentiment.{train,valid}.data (text<TAB>label)

--epochs 0 / --mlm-epochs 0 skip that stage (and say so); --max-train / --max-valid cap the examples read
from --data-dir (default 4000 / 1000; 'all' reads every line) or set how many are generated (1600 / 400).
The checkpoints go to --work-dir, or a new temporary folder; the command prints where, first and last.
"""
import argparse
import os
import tempfile
import time

import numpy as np

# Importing this module does not load TensorFlow (snippets, models, ... are imported where used), so
# `python -m bert4keras_ext demo` checks its options, and keeps TensorFlow's start-up logging quiet, first.

DEFAULTS = {  # (generated task, --data-dir)
    'epochs': (3, 2), 'mlm_epochs': (3, 1), 'maxlen': (32, 128), 'max_train': (1600, 4000), 'max_valid': (400, 1000)}
# Decoding masks the 2nd and 3rd characters of a sentence: [CLS] + 3 tokens at least.
MIN_MAXLEN = 5

# Embedded task: template reviews about hotels, books, phones and deliveries. Positive and negative
# opinions use different adjectives, and negation ("不干净") flips them, so the classifier has to read
# words in context rather than count characters.
_SUBJECTS = ['房间', '酒店', '服务', '这本书', '手机', '电脑', '屏幕', '快递', '味道', '质量', '前台', '早餐',
             '环境', '包装', '衣服', '电池', '故事', '作者写的内容', '物流', '客服']
_ADVERBS = ['很', '非常', '特别', '比较', '真心', '挺', '超级', '实在', '']
_POSITIVE = ['干净', '舒适', '安静', '方便', '不错', '漂亮', '满意', '好', '热情', '便宜', '精彩', '快']
_NEGATIVE = ['脏', '糟糕', '失望', '吵', '差', '贵', '难看', '垃圾', '冷漠', '慢', '无聊', '麻烦']
_POSITIVE_TAILS = ['，下次还会再来', '，推荐购买', '，值得推荐', '，总体满意', '！', '。', '，五星好评']
_NEGATIVE_TAILS = ['，再也不会来了', '，不推荐', '，太失望了', '，不值这个价', '！', '。', '，差评']


def generate_reviews(n, seed=0):
    """`n` (text, label) pairs; label 1 = positive. About a fifth use negation of the other polarity."""
    rng = np.random.RandomState(seed)
    data = []
    for _ in range(n):
        label = int(rng.rand() < 0.5)
        subject = _SUBJECTS[rng.randint(len(_SUBJECTS))]
        adverb = _ADVERBS[rng.randint(len(_ADVERBS))]
        if rng.rand() < 0.2:  # "not <opposite>" carries this label
            word = '不' + (_NEGATIVE if label else _POSITIVE)[rng.randint(12)]
        else:
            word = adverb + (_POSITIVE if label else _NEGATIVE)[rng.randint(12)]
        tails = _POSITIVE_TAILS if label else _NEGATIVE_TAILS
        text = subject + word + tails[rng.randint(len(tails))]
        if rng.rand() < 0.3:  # a second, agreeing clause
            subject2 = _SUBJECTS[rng.randint(len(_SUBJECTS))]
            text = subject2 + _ADVERBS[rng.randint(len(_ADVERBS))] + (_POSITIVE if label else _NEGATIVE)[
                rng.randint(12)] + '，' + text
        data.append((text, label))
    return data


def load_sentiment(path, limit=None):
    """Lines `text<TAB>label` → [(text, int label)]; bad lines raise with file and line number."""
    data = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line:
                continue
            parts = line.rsplit('\t', 1)
            if len(parts) != 2 or parts[1] not in ('0', '1'):
                raise ValueError('%s:%d: expected "text<TAB>0|1", got %r' % (path, number, line[:80]))
            data.append((parts[0], int(parts[1])))
            if limit and len(data) >= limit:
                break
    return data


def _make_sentiment_generator():
    from bert4keras_ext.snippets import DataGenerator, sequence_padding

    class SentimentGenerator(DataGenerator):
        """bert4keras-style batches of ([token_ids, segment_ids], labels) for (text, label) data, each batch
        padded to its own longest text. Shared by the sentiment examples (ALBERT, adversarial, VAT, Theseus)."""

        def __init__(self, data, tokenizer, maxlen, batch_size=32):
            super().__init__(data, batch_size)
            self.tokenizer, self.maxlen = tokenizer, maxlen

        def __iter__(self, random=False):
            batch_token_ids, batch_segment_ids, batch_labels = [], [], []
            for is_end, (text, label) in self.sample(random):
                token_ids, segment_ids = self.tokenizer.encode(text, maxlen=self.maxlen)
                batch_token_ids.append(token_ids)
                batch_segment_ids.append(segment_ids)
                batch_labels.append([label])
                if len(batch_token_ids) == self.batch_size or is_end:
                    yield [sequence_padding(batch_token_ids), sequence_padding(batch_segment_ids)], \
                        sequence_padding(batch_labels)
                    batch_token_ids, batch_segment_ids, batch_labels = [], [], []

    SentimentGenerator.__module__ = __name__
    return SentimentGenerator


def __getattr__(name):
    # `SentimentGenerator` subclasses snippets.DataGenerator, whose import loads TensorFlow: the class is
    # built on first access (`from bert4keras_ext.demo import SentimentGenerator` works as usual).
    if name == 'SentimentGenerator':
        cls = globals()['SentimentGenerator'] = _make_sentiment_generator()
        return cls
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def build_vocab(texts, min_count=1, max_chars=6000):
    """Google-layout vocab covering the task's characters (frequent ones first)."""
    from bert4keras_ext.checkpoints import default_vocab
    from bert4keras_ext.tokenizers import Tokenizer
    counts = {}
    for text in texts:
        for ch in text.lower():
            if not ch.isspace() and not Tokenizer._is_control(ch):
                counts[ch] = counts.get(ch, 0) + 1
    chars = [c for c, k in sorted(counts.items(), key=lambda kv: -kv[1]) if k >= min_count][:max_chars]
    return default_vocab(extra_tokens=chars)


def encode_all(tokenizer, data, maxlen):
    from bert4keras_ext.snippets import sequence_padding
    token_ids, segment_ids, labels = [], [], []
    for text, label in data:
        t, s = tokenizer.encode(text, maxlen=maxlen)
        token_ids.append(t)
        segment_ids.append(s)
        labels.append(label)
    return sequence_padding(token_ids), sequence_padding(segment_ids), np.array(labels)


def mask_tokens(token_ids, tokenizer, rng, rate=0.15):
    """BERT's masking: choose `rate` of the real tokens; 80% → [MASK], 10% random, 10% kept.

    Returns (masked ids, target ids, weights) with weight 1 on the chosen positions.
    """
    special = {0, tokenizer._token_start_id, tokenizer._token_end_id}
    candidate = ~np.isin(token_ids, list(special))
    chosen = candidate & (rng.rand(*token_ids.shape) < rate)
    masked = token_ids.copy()
    action = rng.rand(*token_ids.shape)
    masked[chosen & (action < 0.8)] = tokenizer._token_mask_id
    random_ids = rng.randint(104, tokenizer._vocab_size, size=token_ids.shape)
    replace = chosen & (action >= 0.8) & (action < 0.9)
    masked[replace] = random_ids[replace]
    return masked, token_ids, chosen.astype('float32')


def _check_settings(settings):
    """Refuse values the demo cannot honour (negative epochs, maxlen too short, caps below 1)."""
    rules = {'epochs': 0, 'mlm_epochs': 0, 'maxlen': MIN_MAXLEN, 'max_train': 1, 'max_valid': 1}
    for name, minimum in rules.items():
        value = settings[name]
        if value is None or (value == 'all' and name.startswith('max_')):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError('run_demo: %s must be a whole number >= %d%s, got %r'
                             % (name, minimum, " (or 'all')" if name.startswith('max_') else '', value))


def _epochs(n):
    return '%d epoch%s' % (n, '' if n == 1 else 's')


def run_demo(data_dir=None, work_dir=None, epochs=None, mlm_epochs=None, maxlen=None, max_train=None, seed=0,
             verbose=1, max_valid=None):
    """Run the whole demo; returns a dict of the figures it printed (accuracy, timings).

    Args:
        data_dir: folder with sentiment.{train,valid}.data; None = the generated task.
        work_dir: where the checkpoints are written (created if needed); None = a new temporary folder.
        epochs: fine-tuning epochs; 0 skips fine-tuning (the accuracy reported is then an untrained
            classifier's). None = 3 (generated) / 2 (data_dir).
        mlm_epochs: masked-LM adaptation epochs; 0 skips adaptation (fine-tuning starts from the
            random checkpoint). None = 3 / 1.
        maxlen: tokens per text (>= 5). None = 32 / 128.
        max_train, max_valid: with data_dir, how many examples to read at most ('all' = every one;
            None = 4000 / 1000); without, how many to generate (None = 1600 / 400).
        seed: seeds the data, the masks and Keras.
        verbose: Keras verbosity; 1 becomes 2 (a line per epoch) when stdout is not a terminal.
    """
    settings = dict(epochs=epochs, mlm_epochs=mlm_epochs, maxlen=maxlen, max_train=max_train, max_valid=max_valid)
    _check_settings(settings)
    if not data_dir and 'all' in (max_train, max_valid):
        raise ValueError("run_demo: max_train / max_valid 'all' needs data_dir (the generated task has no size)")
    column = 1 if data_dir else 0
    for name, value in settings.items():
        if value is None:
            settings[name] = DEFAULTS[name][column]
    epochs, mlm_epochs, maxlen = settings['epochs'], settings['mlm_epochs'], settings['maxlen']

    import keras

    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.console import progress_verbose, use_first
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.optimizers import Adam
    from bert4keras_ext.tokenizers import Tokenizer

    verbose = progress_verbose(verbose)
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    timings = {}
    start_all = time.perf_counter()
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
        print('work dir: %s (--work-dir)' % work_dir)
    else:
        work_dir = tempfile.mkdtemp(prefix='bert4keras_ext_demo_')
        print('work dir: %s (a new temporary folder; --work-dir chooses another)' % work_dir)

    if data_dir:
        print('[1/4] task: sentiment reviews from %s, maxlen %d' % (data_dir, maxlen))
        caps = [None if settings[name] == 'all' else settings[name] for name in ('max_train', 'max_valid')]
        train = use_first(load_sentiment(os.path.join(data_dir, 'sentiment.train.data')), caps[0],
                          'training examples', '--max-train', indent=' ' * 6)
        valid = use_first(load_sentiment(os.path.join(data_dir, 'sentiment.valid.data')), caps[1],
                          'validation examples', '--max-valid', indent=' ' * 6)
    else:
        train = generate_reviews(settings['max_train'], seed=seed)
        valid = generate_reviews(settings['max_valid'], seed=seed + 1)
        print('[1/4] task: generated reviews (embedded task) — %d train (--max-train) / %d valid (--max-valid) '
              'examples, maxlen %d' % (len(train), len(valid), maxlen))

    # 1. a tiny checkpoint in Google's exact format
    start = time.perf_counter()
    vocab = build_vocab(text for text, _ in train + valid)
    pretrained = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=vocab, seed=seed,
                                        hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                        intermediate_size=256, max_position_embeddings=max(64, maxlen))
    tokenizer = Tokenizer(pretrained['vocab'], do_lower_case=True)
    print('      wrote %s (+ bert_config.json, vocab.txt: %d tokens)' % (pretrained['checkpoint'], len(vocab)))

    # 2. masked-LM adaptation, saved back as a Google checkpoint
    train_t, train_s, train_y = encode_all(tokenizer, train, maxlen)
    valid_t, valid_s, valid_y = encode_all(tokenizer, valid, maxlen)
    if mlm_epochs:
        print('[2/4] masked-LM adaptation on the task text (%s)' % _epochs(mlm_epochs))
        mlm = build_transformer_model(pretrained['config'], pretrained['checkpoint'], with_mlm='linear',
                                      return_keras_model=False)
        mlm.model.compile(optimizer=Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(mlm_epochs):  # fresh masks each epoch
            masked, targets, weights = mask_tokens(train_t, tokenizer, rng)
            mlm.model.fit([masked, train_s], targets, sample_weight=weights, batch_size=32, epochs=1,
                          verbose=verbose)
        adapted_prefix = os.path.join(work_dir, 'adapted_bert', 'bert_model.ckpt')
        mlm.save_weights_as_checkpoint(adapted_prefix)
        print('      saved the adapted model as a Google checkpoint: %s' % adapted_prefix)
    else:
        adapted_prefix = pretrained['checkpoint']
        print('[2/4] masked-LM adaptation skipped (--mlm-epochs 0): the next steps use the random checkpoint')
    timings['checkpoint_and_mlm_s'] = time.perf_counter() - start

    # 3. fine-tune a classifier from the saved checkpoint
    start = time.perf_counter()
    if epochs:
        print('[3/4] fine-tuning a sentiment classifier on [CLS] (%s)' % _epochs(epochs))
    else:
        print('[3/4] fine-tuning skipped (--epochs 0): the classifier head below is untrained')
    bert = build_transformer_model(pretrained['config'], adapted_prefix)
    cls = ExtractToken(0, name='CLS')(bert.output)
    cls = keras.layers.Dropout(0.1, name='Classifier-Dropout')(cls)
    probs = keras.layers.Dense(2, activation='softmax', name='Classifier')(cls)
    classifier = keras.Model(bert.inputs, probs)
    classifier.compile(optimizer=Adam(2e-4), loss='sparse_categorical_crossentropy',
                       metrics=['accuracy'])
    if epochs:
        classifier.fit([train_t, train_s], train_y, batch_size=32, epochs=epochs, verbose=verbose,
                       validation_data=([valid_t, valid_s], valid_y))
    predictions = classifier.predict([valid_t, valid_s], batch_size=64, verbose=0).argmax(-1)
    accuracy = float((predictions == valid_y).mean())
    timings['fine_tune_s'] = time.perf_counter() - start
    print('      validation accuracy%s: %.2f%% (%d examples), majority baseline %.2f%%'
          % ('' if epochs else ' (untrained classifier)', 100 * accuracy, len(valid_y),
             100 * max(valid_y.mean(), 1 - valid_y.mean())))

    # 4. decoding: masked-LM predictions and classifying new sentences
    print('[4/4] decoding')
    mlm_model = build_transformer_model(pretrained['config'], adapted_prefix, with_mlm=True)
    # a sentence with at least 3 tokens, so that positions 2 and 3 exist ([CLS] is position 0)
    sentence = next((text for text, _ in train if len(tokenizer.encode(text, maxlen=maxlen)[0]) >= MIN_MAXLEN),
                    None) if data_dir else '房间非常干净，下次还会再来'
    if sentence is None:
        raise ValueError('no training text of %s has 3 or more tokens to mask and predict' % data_dir)
    token_ids, segment_ids = tokenizer.encode(sentence, maxlen=maxlen)
    positions = [2, 3]  # the 2nd and 3rd characters of the sentence (position 0 is [CLS])
    masked = list(token_ids)
    for i in positions:
        masked[i] = tokenizer._token_mask_id
    probas = mlm_model.predict([np.array([masked]), np.array([segment_ids])], verbose=0)[0]
    print('      masked sentence: %s' % ''.join(tokenizer.id_to_token(i) for i in masked[1:-1]))
    mlm_hits = 0
    for i in positions:
        top = probas[i].argsort()[::-1][:3]
        guesses = ', '.join('%s (%.2f)' % (tokenizer.id_to_token(int(t)), probas[i, t]) for t in top)
        hit = int(top[0]) == token_ids[i]
        mlm_hits += hit
        print('      position %d (was %r): %s' % (i, tokenizer.id_to_token(token_ids[i]), guesses))
    examples = ['酒店非常干净，服务热情', '快递太慢了，包装也很差', '屏幕不清楚，电池不耐用'] if not data_dir else \
        ['这家酒店的服务非常好，下次还来', '质量太差了，再也不会买了']
    t, s, _ = encode_all(tokenizer, [(e, 0) for e in examples], maxlen)
    for text, p in zip(examples, classifier.predict([t, s], verbose=0)):
        print('      %-24s → %s (p=%.2f)' % (text, 'positive' if p[1] > 0.5 else 'negative', p.max()))
    timings['total_s'] = time.perf_counter() - start_all
    print('done in %.1f s (checkpoint + MLM %.1f s, fine-tuning %.1f s); files in %s'
          % (timings['total_s'], timings['checkpoint_and_mlm_s'], timings['fine_tune_s'], work_dir))
    return {'accuracy': accuracy, 'mlm_top1_hits': mlm_hits, 'mlm_masked': len(positions), **timings,
            'work_dir': work_dir}


def _cap(text):
    """argparse type of --max-train / --max-valid: a whole number >= 1, or 'all'."""
    if text == 'all':
        return text
    from bert4keras_ext.console import positive_int
    return positive_int(text)


def build_parser():
    """The demo's options (checked here, before TensorFlow loads)."""
    from bert4keras_ext.console import existing_dir, int_at_least, non_negative_int
    parser = argparse.ArgumentParser(prog='python -m bert4keras_ext demo', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir,
                        help='folder with sentiment.train.data / sentiment.valid.data')
    parser.add_argument('--work-dir', help='where to write the checkpoints (default: a new temp folder)')
    parser.add_argument('--epochs', type=non_negative_int,
                        help='fine-tuning epochs (default 3, or 2 with --data-dir; 0 skips fine-tuning)')
    parser.add_argument('--mlm-epochs', type=non_negative_int,
                        help='masked-LM adaptation epochs (default 3, or 1 with --data-dir; 0 skips it)')
    parser.add_argument('--maxlen', type=int_at_least(MIN_MAXLEN),
                        help='max tokens per text (default 32, or 128 with --data-dir)')
    parser.add_argument('--max-train', type=_cap, metavar='N|all',
                        help="training examples: read at most N from --data-dir (default 4000; 'all'), "
                             'or generate N (default 1600)')
    parser.add_argument('--max-valid', type=_cap, metavar='N|all',
                        help="validation examples: read at most N from --data-dir (default 1000; 'all'), "
                             'or generate N (default 400)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no per-epoch progress output')
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data_dir:
        missing = [n for n in ('sentiment.train.data', 'sentiment.valid.data')
                   if not os.path.isfile(os.path.join(args.data_dir, n))]
        if missing:
            parser.error('--data-dir %s has no %s' % (args.data_dir, ' or '.join(missing)))
    elif 'all' in (args.max_train, args.max_valid):
        parser.error("--max-train / --max-valid 'all' needs --data-dir (the generated task has no size)")
    if args.work_dir and os.path.exists(args.work_dir) and not os.path.isdir(args.work_dir):
        parser.error('--work-dir %s exists and is not a directory' % args.work_dir)
    from bert4keras_ext.console import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads: its C++ start-up logging stays off stderr
    run_demo(data_dir=args.data_dir, work_dir=args.work_dir, epochs=args.epochs, mlm_epochs=args.mlm_epochs,
             maxlen=args.maxlen, max_train=args.max_train, max_valid=args.max_valid, seed=args.seed,
             verbose=0 if args.quiet else 1)
    return 0
