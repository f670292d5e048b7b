"""Named-entity recognition with BERT + CRF, decoded by batched Viterbi, scored by entity-level F1.

    python examples/task_sequence_labeling_ner_crf.py            # tiny random BERT, generated sentences
    python examples/task_sequence_labeling_ner_crf.py --data-dir china-people-daily-ner-corpus \\
        --checkpoint-dir chinese_L-12_H-768_A-12

With no arguments: writes a tiny Google-format BERT checkpoint covering the generated text,
generates Chinese sentences with person / place / organisation names from templates, trains
BERT → Dense → ConditionalRandomField briefly, printing the entity F1 of held-out sentences after each
epoch (exact span and type), and reports precision / recall / F1 of the best epoch.

--data-dir reads the People's Daily NER corpus layout: example.train and example.dev (or train.txt
/ dev.txt), one "char tag" pair per line (BIO tags such as B-PER, I-LOC, O), a blank line between
sentences.

Tags are BIO over tokens: 0 = O, 2k+1 = B-type_k, 2k+2 = I-type_k. [CLS] and [SEP] are labelled O,
so decoding constrains paths to start and end in O (`starts=[0], ends=[0]`, as bert4keras).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from bert4keras_ext.console import (
    existing_dir, positive_float, positive_int, progress_verbose, quiet_tensorflow, use_first,
)

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

TYPES = ['PER', 'LOC', 'ORG']
_PEOPLE = ['张伟', '王芳', '李娜', '刘洋', '陈静', '杨帆', '赵磊', '黄敏', '周杰', '吴昊', '徐丽', '孙强', '马超',
           '朱琳', '胡军', '郭峰', '林涛', '何雪', '高远', '罗兰', '欧阳明', '司马青', '诸葛亮亮']
_PLACES = ['北京', '上海', '广州', '深圳', '杭州', '南京', '武汉', '成都', '西安', '重庆', '长江', '黄河', '西湖',
           '泰山', '内蒙古', '新疆', '海南岛', '青藏高原']
_ORGS = ['新华社', '清华大学', '人民银行', '中国石化', '华为公司', '联合国', '外交部', '国家统计局', '复旦大学',
         '中央电视台', '红十字会', '科学院']
_TEMPLATES = [
    '{PER}昨天在{LOC}参加了{ORG}的会议。',
    '{ORG}总部位于{LOC}。',
    '记者从{ORG}获悉，{PER}将于下周前往{LOC}考察。',
    '{PER}和{PER}都在{ORG}工作。',
    '今天{LOC}天气晴朗，适合出游。',
    '{PER}说，{LOC}的经济发展很快。',
    '据{ORG}报道，{LOC}发生了地震。',
    '我们明天一起去{LOC}看望{PER}吧。',
    '{ORG}发布了新的统计数据。',
    '他毕业以后一直在家里休息。',
]


def generate_sentences(n, seed=0):
    """`n` (text, [(start, end, type)]) examples with half-open character spans."""
    rng = np.random.RandomState(seed)
    pools = {'PER': _PEOPLE, 'LOC': _PLACES, 'ORG': _ORGS}
    data = []
    for _ in range(n):
        template = _TEMPLATES[rng.randint(len(_TEMPLATES))]
        text, entities, rest = '', [], template
        while '{' in rest:
            before, rest = rest.split('{', 1)
            kind, rest = rest.split('}', 1)
            text += before
            name = pools[kind][rng.randint(len(pools[kind]))]
            entities.append((len(text), len(text) + len(name), kind))
            text += name
        data.append((text + rest, entities))
    return data


def load_people_daily(path, limit=None):
    """People's Daily "char tag" lines → [(text, [(start, end, type)])]."""
    data, chars, tags = [], [], []

    def flush():
        if chars:
            data.append((''.join(chars), bio_strings_to_spans(tags)))
        chars.clear()
        tags.clear()

    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip():
                flush()
                if limit and len(data) >= limit:
                    return data
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError('%s:%d: expected "char tag", got %r' % (path, number, line[:40]))
            chars.append(parts[0])
            tags.append(parts[1])
    flush()
    return data[:limit] if limit else data


def bio_strings_to_spans(tags):
    spans, start, kind = [], None, None
    for i, tag in enumerate(list(tags) + ['O']):
        if tag == 'O' or tag.startswith('B-') or (tag.startswith('I-') and tag[2:] != kind):
            if start is not None:
                spans.append((start, i, kind))
                start = kind = None
            if tag != 'O':
                start, kind = i, tag[2:]
    return spans


def encode_dataset(tokenizer, data, maxlen, types):
    from bert4keras_ext.snippets import sequence_padding
    from bert4keras_ext.spans import bio_labels
    token_ids, labels, mappings, gold = [], [], [], []
    for text, entities in data:
        tokens = tokenizer.tokenize(text, maxlen=maxlen)
        mapping = tokenizer.rematch(text, tokens)
        tags, kept = bio_labels(mapping, entities, types)
        token_ids.append(tokenizer.tokens_to_ids(tokens))
        labels.append(tags)
        mappings.append(mapping)
        gold.append(set(kept))
    return sequence_padding(token_ids), sequence_padding(labels), mappings, gold


def recognize(model, crf, token_ids, mappings, types, batch_size=64):
    """Predicted {(start, end, type)} character spans per example (batched Viterbi)."""
    from bert4keras_ext.spans import bio_decode, token_span_to_char_span
    scores = model.predict([token_ids, np.zeros_like(token_ids)], batch_size=batch_size, verbose=0)
    tags = crf.decode(scores, starts=[0], ends=[0])
    predictions = []
    for row, mapping in zip(tags, mappings):
        entities = set()
        for start, end, kind in bio_decode(row[:len(mapping)], types):
            span = token_span_to_char_span(mapping, start, end)
            if span is not None:
                entities.add((span[0], span[1], kind))
        predictions.append(entities)
    return predictions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help="People's Daily NER folder (example.train / example.dev)")
    parser.add_argument('--checkpoint-dir', type=existing_dir,
                        help='folder with bert_config.json, bert_model.ckpt*, vocab.txt')
    parser.add_argument('--epochs', type=positive_int, help='training epochs (default 5 generated, 10 real)')
    parser.add_argument('--num-train', type=positive_int,
                        help='training sentences (default 800 generated; a cap on --data-dir, default all)')
    parser.add_argument('--num-valid', type=positive_int,
                        help='evaluation sentences (default 300 generated; a cap on --data-dir, default all)')
    parser.add_argument('--maxlen', type=positive_int, help='max tokens (default 40 generated, 256 real)')
    parser.add_argument('--batch-size', type=positive_int, help='default 32 tiny, 16 real')
    parser.add_argument('--lr', type=positive_float, help='Adam learning rate (default 1e-3 tiny, 2e-5 real)')
    parser.add_argument('--crf-lr-multiplier', type=positive_float,
                        help='CRF transition lr multiplier (default 10 tiny, 1000 real as bert4keras)')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)

    import keras

    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.demo import build_vocab
    from bert4keras_ext.heads import ConditionalRandomField
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.optimizers import Adam
    from bert4keras_ext.spans import span_prf
    from bert4keras_ext.tokenizers import Tokenizer

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    if args.data_dir:
        names = [('example.train', 'example.dev'), ('train.txt', 'dev.txt')]
        found = [pair for pair in names if os.path.isfile(os.path.join(args.data_dir, pair[0]))]
        if not found:
            parser.error('--data-dir %s has no example.train / example.dev (or train.txt / dev.txt)' % args.data_dir)
        train = use_first(load_people_daily(os.path.join(args.data_dir, found[0][0])), args.num_train,
                          'training sentences of %s' % found[0][0], '--num-train')
        valid = use_first(load_people_daily(os.path.join(args.data_dir, found[0][1])), args.num_valid,
                          'evaluation sentences of %s' % found[0][1], '--num-valid')
        types = sorted({kind for _, entities in train for _, _, kind in entities})
        source = args.data_dir
    else:
        train = generate_sentences(args.num_train or 800, seed=args.seed)
        valid = generate_sentences(args.num_valid or 300, seed=args.seed + 1000)
        types = list(TYPES)
        source = 'generated sentences'
    real = bool(args.checkpoint_dir)
    maxlen = args.maxlen or (256 if real or args.data_dir else 40)
    epochs = args.epochs or (10 if real else 5)
    batch_size = args.batch_size or (16 if real else 32)
    lr = args.lr or (2e-5 if real else 1e-3)
    multiplier = args.crf_lr_multiplier or (1000 if real else 10)
    print('task: %s — %d train / %d valid sentences, types %s, maxlen %d'
          % (source, len(train), len(valid), types, maxlen))

    if real:
        config_path = os.path.join(args.checkpoint_dir, 'bert_config.json')
        checkpoint_path = os.path.join(args.checkpoint_dir, 'bert_model.ckpt')
        vocab_path = os.path.join(args.checkpoint_dir, 'vocab.txt')
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='ner_crf_')
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'),
                                       vocab=build_vocab(text for text, _ in train + valid), seed=args.seed,
                                       hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=256, max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        config_path, checkpoint_path, vocab_path = paths['config'], paths['checkpoint'], paths['vocab']
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)
    train_ids, train_tags, _, _ = encode_dataset(tokenizer, train, maxlen, types)
    valid_ids, _, valid_maps, valid_gold = encode_dataset(tokenizer, valid, maxlen, types)

    bert = build_transformer_model(config_path, checkpoint_path)
    emissions = keras.layers.Dense(2 * len(types) + 1, name='Tag-Scores')(bert.output)
    crf = ConditionalRandomField(lr_multiplier=multiplier, name='CRF')
    model = keras.Model(bert.inputs, crf([emissions, bert.inputs[0]]))  # token ids as the padding mask
    model.compile(optimizer=Adam(lr), loss=crf.sparse_loss, metrics=[crf.sparse_accuracy])

    class Evaluator(keras.callbacks.Callback):
        """Entity F1 on the validation sentences after every epoch (Viterbi-decoded); keeps the best weights."""

        def __init__(self):
            super().__init__()
            self.best, self.best_weights = None, None

        def on_epoch_end(self, epoch, logs=None):
            predictions = recognize(model, crf, valid_ids, valid_maps, types)
            scores = span_prf(predictions, valid_gold)
            if self.best is None or scores['f1'] > self.best[1]['f1']:
                self.best, self.best_weights = (predictions, scores), model.get_weights()
            print('epoch %d: valid entity F1 %.4f (best %.4f)' % (epoch + 1, scores['f1'], self.best[1]['f1']))

    evaluator = Evaluator()
    model.fit([train_ids, np.zeros_like(train_ids)], train_tags, batch_size=batch_size, epochs=epochs,
              verbose=0 if args.quiet else progress_verbose(1), callbacks=[evaluator])
    model.set_weights(evaluator.best_weights)
    predictions, scores = evaluator.best
    elapsed = time.perf_counter() - start
    print('entities on %d valid sentences: precision %.4f, recall %.4f, F1 %.4f (%d gold, %d predicted)'
          % (len(valid), scores['precision'], scores['recall'], scores['f1'], scores['gold'], scores['predicted']))
    for (text, _), predicted in list(zip(valid, predictions))[:3]:
        print('  %s → %s' % (text, [(text[s:e], kind) for s, e, kind in sorted(predicted)]))
    print('done in %.1f s' % elapsed)
    return {'f1': scores['f1'], 'precision': scores['precision'], 'recall': scores['recall'], 'seconds': elapsed}


if __name__ == '__main__':
    main()
    sys.exit(0)
