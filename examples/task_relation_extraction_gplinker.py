"""Relation (triple) extraction with GPLinker over BERT (kexue.fm/archives/8888).

    python examples/task_relation_extraction_gplinker.py            # tiny random BERT, generated data
    python examples/task_relation_extraction_gplinker.py --data-dir DuIE --checkpoint-dir chinese_L-12_H-768_A-12

With no arguments: writes a tiny Google-format BERT checkpoint whose vocabulary covers the generated
text, generates Chinese sentences with (subject, predicate, object) triples from templates — one
subject with several objects, an entity that is both object and subject, nested entities
("北京" inside "北京大学") — trains briefly and prints exact-triple precision / recall / F1.

--data-dir reads DuIE JSON lines (train_data.json / dev_data.json, or train.json / dev.json), each
`{"text": ..., "spo_list": [{"subject": ..., "predicate": ..., "object": ...}]}` (DuIE 2.0
objects {"@value": ...} are accepted), with the predicates from all_50_schemas / schema.json when
present, else from the data. --checkpoint-dir loads a real checkpoint (bert_config.json,
bert_model.ckpt, vocab.txt).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from bert4keras_ext.console import (
    existing_dir, positive_float, positive_int, progress, progress_verbose, quiet_tensorflow, use_first,
)

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

_PEOPLE = ['张伟', '王芳', '李娜', '刘洋', '陈静', '杨帆', '赵磊', '黄敏', '周杰', '吴昊', '徐丽', '孙强', '马超',
           '朱琳', '胡军', '郭峰', '林涛', '何雪', '高远', '罗兰', '宋佳', '韩梅', '冯晨', '邓超']
_CITIES = ['北京', '上海', '广州', '深圳', '杭州', '南京', '武汉', '成都', '西安', '重庆', '天津', '苏州', '长沙',
           '青岛', '厦门', '昆明']
_BOOKS = ['平凡的世界', '围城', '活着', '边城', '红高粱', '白鹿原', '长恨歌', '城南旧事', '呼兰河传', '家春秋']
_FILMS = ['大地', '远方', '归途', '夜航', '追光', '春潮', '长河', '山海', '微光', '旧梦']
_COMPANIES = ['星辰科技', '蓝海集团', '天启公司', '云帆网络', '华盛实业', '百川传媒', '远景能源', '青禾农业']
PREDICATES = ['出生地', '毕业院校', '作者', '导演', '创始人', '妻子', '总部地点']


def _template_sentence(rng):
    """One generated (text, [(subject, predicate, object)]) example."""
    pick = lambda pool: pool[rng.randint(len(pool))]  # noqa: E731
    p, p2 = rng.choice(_PEOPLE, size=2, replace=False)
    c, c2 = rng.choice(_CITIES, size=2, replace=False)
    if rng.rand() < 0.5:
        c2 = c  # nested: "出生在北京，毕业于北京大学"
    book, film, company = pick(_BOOKS), pick(_FILMS), pick(_COMPANIES)
    kind = rng.randint(8)
    if kind == 0:
        return '%s出生于%s。' % (p, c), [(p, '出生地', c)]
    if kind == 1:
        return '%s出生在%s，毕业于%s大学。' % (p, c, c2), [(p, '出生地', c), (p, '毕业院校', c2 + '大学')]
    if kind == 2:
        return '《%s》是%s创作的小说。' % (book, p), [(book, '作者', p)]
    if kind == 3:
        return '电影《%s》由%s执导，%s主演。' % (film, p, p2), [(film, '导演', p)]
    if kind == 4:
        return '%s由%s创办，总部位于%s。' % (company, p, c), [(company, '创始人', p), (company, '总部地点', c)]
    if kind == 5:
        return '%s的妻子是%s。' % (p, p2), [(p, '妻子', p2)]
    if kind == 6:
        return ('%s是%s人，他的妻子%s毕业于%s大学。' % (p, c, p2, c2),
                [(p, '出生地', c), (p, '妻子', p2), (p2, '毕业院校', c2 + '大学')])
    return '%s的创始人%s出生于%s。' % (company, p, c), [(company, '创始人', p), (p, '出生地', c)]


def generate_dataset(n, seed=0):
    """`n` DuIE-format dicts {'text', 'spo_list'} from templates."""
    rng = np.random.RandomState(seed)
    data = []
    for _ in range(n):
        text, triples = _template_sentence(rng)
        data.append({'text': text, 'spo_list': [{'subject': s, 'predicate': p, 'object': o} for s, p, o in triples]})
    return data


def load_duie(path, limit=None):
    """DuIE JSON lines → list of {'text', 'spo_list'}; bad lines raise with file and line number."""
    data = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                data.append({'text': item['text'], 'spo_list': item.get('spo_list', [])})
            except (ValueError, KeyError) as e:
                raise ValueError('%s:%d: not a DuIE record (%s)' % (path, number, e)) from e
            if limit and len(data) >= limit:
                break
    return data


def _first_existing(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_predicates(data_dir, data):
    schema = _first_existing(data_dir, ['all_50_schemas', 'schema.json', 'duie_schema.json']) if data_dir else None
    predicates = []
    if schema:
        with open(schema, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    predicate = json.loads(line)['predicate']
                    if predicate not in predicates:
                        predicates.append(predicate)
    for item in data:
        for spo in item['spo_list']:
            if spo['predicate'] not in predicates:
                predicates.append(spo['predicate'])
    return predicates


def encode_dataset(tokenizer, data, predicate2id, maxlen):
    """Token ids, segment ids and padded sparse labels for the whole dataset, plus per-example
    mappings and gold text triples."""
    from bert4keras_ext.gplinker import find_spo_char_spans, parse_duie_object, spo_labels
    from bert4keras_ext.snippets import sequence_padding
    token_ids, entity, head, tail, mappings, gold = [], [], [], [], [], []
    for item in data:
        text = item['text']
        tokens = tokenizer.tokenize(text, maxlen=maxlen)
        mapping = tokenizer.rematch(text, tokens)
        e, h, t, _ = spo_labels(mapping, find_spo_char_spans(text, item['spo_list']), predicate2id)
        token_ids.append(tokenizer.tokens_to_ids(tokens))
        entity.append(e)
        head.append(h)
        tail.append(t)
        mappings.append(mapping)
        gold.append({(spo['subject'], spo['predicate'], parse_duie_object(spo['object'])) for spo in item['spo_list']})
    token_ids = sequence_padding(token_ids)
    labels = [sequence_padding(x, seq_dims=2) for x in (entity, head, tail)]
    return token_ids, labels, mappings, gold


def build_model(config_path, checkpoint_path, num_predicates, head_size, efficient=False):
    from bert4keras_ext.gplinker import gplinker_heads
    from bert4keras_ext.models import build_transformer_model
    import keras
    bert = build_transformer_model(config_path, checkpoint_path)
    # the token ids double as the padding mask (id 0 = padding)
    outputs = gplinker_heads(bert.output, num_predicates, head_size=head_size, efficient=efficient,
                             mask=bert.inputs[0])
    return keras.Model(bert.inputs, outputs)


def extract(model, token_ids, mappings, data, id2predicate, batch_size=64):
    """Predicted {(subject, predicate, object)} sets, one per example."""
    from bert4keras_ext.gplinker import decode_spo, spo_to_text
    entity, head, tail = model.predict([token_ids, np.zeros_like(token_ids)], batch_size=batch_size, verbose=0)
    lengths = (token_ids > 0).sum(1)
    predictions = []
    for i, item in enumerate(progress(data, desc='decoding triples', unit='text', leave=False)):
        triples = decode_spo(entity[i], head[i], tail[i], length=int(lengths[i]))
        predictions.append(spo_to_text(triples, item['text'], mappings[i], id2predicate))
    return predictions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='DuIE folder (train_data.json / dev_data.json)')
    parser.add_argument('--checkpoint-dir', type=existing_dir,
                        help='folder with bert_config.json, bert_model.ckpt*, vocab.txt')
    parser.add_argument('--epochs', type=positive_int, help='training epochs (default 6 generated, 20 real)')
    parser.add_argument('--num-train', type=positive_int,
                        help='training examples (default 1000 generated; a cap on --data-dir, default all)')
    parser.add_argument('--num-valid', type=positive_int,
                        help='evaluation examples (default 300 generated; a cap on --data-dir, default all)')
    parser.add_argument('--maxlen', type=positive_int, default=None, help='max tokens (default 48 generated, 128 real)')
    parser.add_argument('--batch-size', type=positive_int, default=None, help='default 32 tiny, 16 real')
    parser.add_argument('--lr', type=positive_float, default=None,
                        help='Adam learning rate (default 1e-3 tiny, 2e-5 real)')
    parser.add_argument('--head-size', type=positive_int, default=None, help='default 32 tiny, 64 real')
    parser.add_argument('--efficient', action='store_true', help='EfficientGlobalPointer heads')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)

    import keras

    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.demo import build_vocab
    from bert4keras_ext.gplinker import triple_prf
    from bert4keras_ext.losses import sparse_global_pointer_crossentropy
    from bert4keras_ext.optimizers import Adam
    from bert4keras_ext.tokenizers import Tokenizer

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    if args.data_dir:
        train_path = _first_existing(args.data_dir, ['train_data.json', 'train.json'])
        valid_path = _first_existing(args.data_dir, ['dev_data.json', 'dev.json', 'valid.json'])
        if not train_path or not valid_path:
            parser.error('--data-dir %s needs train_data.json and dev_data.json (or train.json / dev.json)'
                         % args.data_dir)
        train = use_first(load_duie(train_path), args.num_train, 'training texts of %s' % train_path, '--num-train')
        valid = use_first(load_duie(valid_path), args.num_valid, 'validation texts of %s' % valid_path, '--num-valid')
        source = args.data_dir
    else:
        train = generate_dataset(args.num_train or 1000, seed=args.seed)
        valid = generate_dataset(args.num_valid or 300, seed=args.seed + 1000)
        source = 'generated triples'
    real = bool(args.checkpoint_dir)
    maxlen = args.maxlen or (128 if real or args.data_dir else 48)
    epochs = args.epochs or (20 if real else 6)
    batch_size = args.batch_size or (16 if real else 32)
    lr = args.lr or (2e-5 if real else 1e-3)
    head_size = args.head_size or (64 if real else 32)
    predicates = load_predicates(args.data_dir, train + valid) if args.data_dir else list(PREDICATES)
    predicate2id = {p: i for i, p in enumerate(predicates)}
    print('task: %s — %d train / %d valid texts, %d predicates, maxlen %d'
          % (source, len(train), len(valid), len(predicates), maxlen))

    if real:
        config_path = os.path.join(args.checkpoint_dir, 'bert_config.json')
        checkpoint_path = os.path.join(args.checkpoint_dir, 'bert_model.ckpt')
        vocab_path = os.path.join(args.checkpoint_dir, 'vocab.txt')
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='gplinker_')
        vocab = build_vocab(item['text'] for item in train + valid)
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=vocab, seed=args.seed,
                                       hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=256, max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        config_path, checkpoint_path, vocab_path = paths['config'], paths['checkpoint'], paths['vocab']
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)

    train_ids, train_labels, _, _ = encode_dataset(tokenizer, train, predicate2id, maxlen)
    valid_ids, _, valid_maps, valid_gold = encode_dataset(tokenizer, valid, predicate2id, maxlen)
    model = build_model(config_path, checkpoint_path, len(predicates), head_size, efficient=args.efficient)
    model.compile(optimizer=Adam(lr), loss=[sparse_global_pointer_crossentropy] * 3)
    model.fit([train_ids, np.zeros_like(train_ids)], train_labels, batch_size=batch_size, epochs=epochs,
              verbose=0 if args.quiet else progress_verbose(1))

    id2predicate = dict(enumerate(predicates))
    predictions = extract(model, valid_ids, valid_maps, valid, id2predicate)
    scores = triple_prf(predictions, valid_gold)
    elapsed = time.perf_counter() - start
    print('exact triples on %d valid texts: precision %.4f, recall %.4f, F1 %.4f (%d gold, %d predicted)'
          % (len(valid), scores['precision'], scores['recall'], scores['f1'], scores['gold'], scores['predicted']))
    for item, predicted in list(zip(valid, predictions))[:3]:
        print('  %s → %s' % (item['text'], sorted(predicted)))
    print('done in %.1f s' % elapsed)
    return {'f1': scores['f1'], 'precision': scores['precision'], 'recall': scores['recall'], 'seconds': elapsed}


if __name__ == '__main__':
    main()
    sys.exit(0)
