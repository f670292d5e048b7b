#! -*- coding: utf-8 -*-
"""Title generation with UniLM on BERT (bert4keras' task_seq2seq_autotitle.py, on Keras 3).

    python examples/task_seq2seq_autotitle.py                      # tiny BERT, generated news, ~1 minute
    python examples/task_seq2seq_autotitle.py --data-dir csl --checkpoint-dir chinese_L-12_H-768_A-12

UniLM (kexue.fm/archives/6933): `[CLS] content [SEP] title [SEP]` goes through one BERT whose
attention lets the content (segment 0) see itself bidirectionally and every title token (segment 1)
see the content and the title up to itself, so the MLM head becomes a conditional language model.
The loss is the cross-entropy of each title token given everything before it, counted on the title
part only (a `Loss` layer in the graph, as in bert4keras). Titles are decoded with beam search
(topk 3) through `CachedDecoder` (key/value cache; many contents per batch) and scored with
character-level ROUGE-1/2/L F1 and corpus BLEU-4 (`bert4keras_ext.metrics`), next to two trivial
baselines: one fixed title for everything (the most frequent training title) and the lead (the
first characters of the content, as many as an average title).

With no arguments: generated news items (a subject, an event, a place, a date and filler, in several
orders, sometimes with a second organisation mentioned), where the title is "subject + event"; a tiny
random BERT in Google's format whose vocabulary covers the text; a few epochs of training.

--data-dir holds train.tsv and valid.tsv, one `title<TAB>content` per line (the layout of the CSL
abstract→title data used by bert4keras' CSL example; for THUCNews write each file's first line as the
title and the rest as the content). --checkpoint-dir is an unpacked Google-format BERT / RoBERTa
release (bert_config.json, bert_model.ckpt.*, vocab.txt). Either way the vocabulary is simplified
(`load_vocab(simplified=True)`) and the embedding rows sliced with `keep_tokens`, as bert4keras does.

A copy-heavy model can loop on repeated characters ("阿里巴巴巴巴…", cut at --title-maxlen); the
search is bert4keras' by default, and --no-repeat-ngram-size 2 forbids such repeats.
"""
import argparse
import collections
import os
import tempfile
import time

import numpy as np

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.backend import keras, ops  # noqa: E402
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import existing_dir, positive_float, positive_int, progress_verbose, use_first  # noqa: E402
from bert4keras_ext.console import progress as progress_bar  # noqa: E402
from bert4keras_ext.demo import build_vocab  # noqa: E402
from bert4keras_ext.generation import CachedDecoder  # noqa: E402
from bert4keras_ext.layers import Loss  # noqa: E402
from bert4keras_ext.metrics import bleu, rouge_scores  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.snippets import DataGenerator, sequence_padding  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer, load_vocab  # noqa: E402

# ----------------------------------------------------------------------------------- generated data
_SUBJECTS = ['华为公司', '小米集团', '北京大学', '清华大学', '中国女排', '国家电网', '中国银行', '阿里巴巴', '腾讯公司',
             '上海博物馆', '故宫博物院', '中国科学院', '国家航天局', '比亚迪', '京东集团', '人民医院', '南方航空',
             '招商银行']
_EVENTS = ['发布新款手机', '举办开放日活动', '获得年度大奖', '启动招聘计划', '完成新一轮融资', '举行新闻发布会',
           '签署合作协议', '开通国际航线', '推出便民服务', '召开年度大会', '成立研究中心', '捐赠救灾物资',
           '公布年度业绩', '举办科技论坛', '开设新门店']
_PLACES = ['北京', '上海', '深圳', '杭州', '成都', '武汉', '西安', '南京', '广州', '重庆']
_SOURCES = ['新华社', '人民网', '央视新闻', '本报记者']
_FILLERS = ['现场吸引了众多市民关注。', '业内人士认为此举意义重大。', '相关负责人接受了记者采访。',
            '活动持续了三个小时。', '各界代表出席了仪式。', '']


def generate_news(n, seed=0):
    """`n` (title, content) pairs; the title is the content's subject followed by its event.

    The subject and the event are separated by a place (and often a date) and the content may name
    a second organisation, so the model has to find the right pieces rather than copy a prefix.
    """
    rng = np.random.RandomState(seed)
    pick = lambda pool: pool[rng.randint(len(pool))]  # noqa: E731
    data = []
    for _ in range(n):
        subject, event, place = pick(_SUBJECTS), pick(_EVENTS), pick(_PLACES)
        other = pick([s for s in _SUBJECTS if s != subject])
        date = '%d月%d日' % (rng.randint(1, 13), rng.randint(1, 29))
        filler = pick(_FILLERS)
        kind = rng.randint(5)
        if kind == 0:
            content = '%s，%s在%s%s，%s' % (date, subject, place, event, filler)
        elif kind == 1:
            content = '据%s报道，%s于%s在%s%s。%s' % (pick(_SOURCES), subject, date, place, event, filler)
        elif kind == 2:
            content = '%s消息：%s，%s正式%s，%s' % (place, date, subject, event, filler)
        elif kind == 3:
            content = '%s在%s，%s宣布%s。%s' % (date, place, subject, event, filler)
        else:
            content = '%s，%s在%s%s，%s的代表也出席了。' % (date, subject, place, event, other)
        data.append((subject + event, content))
    return data


def load_pairs(path, limit=None):
    """Lines `title<TAB>content` → [(title, content)]; bad lines raise with file and line number."""
    data = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip():
                continue
            parts = line.split('\t', 1)
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError('%s:%d: expected "title<TAB>content", got %r' % (path, number, line[:80]))
            data.append((parts[0].strip(), parts[1].strip()))
            if limit and len(data) >= limit:
                break
    return data


# ----------------------------------------------------------------------------------- model and loss
class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], None): `[CLS] content [SEP] title [SEP]`, segments 0…0 1…1."""

    def __init__(self, data, tokenizer, maxlen, batch_size=32):
        super().__init__(data, batch_size)
        self.tokenizer, self.maxlen = tokenizer, maxlen

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (title, content) in self.sample(random):
            token_ids, segment_ids = self.tokenizer.encode(content, title, maxlen=self.maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                yield [sequence_padding(batch_token_ids), sequence_padding(batch_segment_ids)], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Seq2seq loss on the target part only: token t+1 predicted at position t, weighted by the
    segment ids of the predicted tokens (1 on the title and its final [SEP], 0 on the content and
    the padding)."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]
        y_mask = ops.cast(y_mask[:, 1:], y_pred.dtype)
        y_pred = y_pred[:, :-1]
        loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        return ops.sum(loss * y_mask) / ops.maximum(ops.sum(y_mask), 1.0)


class AutoTitle:
    """Beam-search titles with a KV-cached UniLM decoder; contents are truncated to fit the budget."""

    def __init__(self, transformer, tokenizer, maxlen, title_maxlen, no_repeat_ngram_size=None):
        self.tokenizer = tokenizer
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.content_maxlen = maxlen - title_maxlen
        self.decoder = CachedDecoder(transformer, end_id=tokenizer._token_end_id, maxlen=title_maxlen)

    def generate(self, content, topk=3):
        return self.generate_batch([content], topk)[0]

    def generate_batch(self, contents, topk=3):
        inputs = [list(self.tokenizer.encode(c, maxlen=self.content_maxlen)) for c in contents]
        outputs = self.decoder.beam_search_batch(inputs, topk=topk, no_repeat_ngram_size=self.no_repeat_ngram_size)
        return [self.tokenizer.decode(ids) for ids in outputs]


def evaluate(autotitle, data, topk=3, batch_size=32, progress=True):
    """Titles for every (title, content) of `data` → ({'rouge-1', 'rouge-2', 'rouge-l', 'bleu'}, titles)."""
    generated = []
    # a bar on an interactive terminal only: piped output gets no \r redraws
    with progress_bar(total=len(data), desc='beam search (topk %d)' % topk, unit='text', disable=not progress) as bar:
        for i in range(0, len(data), batch_size):
            chunk = [content for _, content in data[i:i + batch_size]]
            generated.extend(autotitle.generate_batch(chunk, topk))
            bar.update(len(chunk))
    return score(generated, [title for title, _ in data]), generated


def score(hypotheses, references):
    scores = rouge_scores(hypotheses, references)
    scores['bleu'] = bleu(references, hypotheses)
    return scores


def baselines(train, valid):
    """Scores of two titles that ignore the model: the most frequent training title for every text,
    and the lead (the first characters of the content, as many as a training title has on average)."""
    fixed = collections.Counter(title for title, _ in train).most_common(1)[0][0]
    lead_length = max(1, int(round(np.mean([len(title) for title, _ in train]))))
    references = [title for title, _ in valid]
    return {'fixed': score([fixed] * len(valid), references), 'fixed_title': fixed,
            'lead': score([content[:lead_length] for _, content in valid], references)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with train.tsv / valid.tsv (title<TAB>content)')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--epochs', type=positive_int, help='training epochs (default 3 generated, 20 real)')
    parser.add_argument('--num-train', type=positive_int,
                        help='training pairs (default 1200 generated; a cap on --data-dir, default all)')
    parser.add_argument('--num-valid', type=positive_int,
                        help='pairs scored (default 100 generated; a cap on --data-dir, default 1000)')
    parser.add_argument('--maxlen', type=positive_int, help='tokens of content + title (default 72 generated, 256 real)')
    parser.add_argument('--title-maxlen', type=positive_int, help='longest generated title (default 16, 32 real)')
    parser.add_argument('--topk', type=positive_int, default=3, help='beam size')
    parser.add_argument('--no-repeat-ngram-size', type=positive_int, default=None,
                        help='forbid any n-gram twice in a title (off by default, as in bert4keras)')
    parser.add_argument('--batch-size', type=positive_int, help='training batch (default 32 generated, 16 real)')
    parser.add_argument('--lr', type=positive_float, help='Adam learning rate (default 3e-3 tiny model, 1e-5 real)')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, choices=(0, 1, 2), default=1,
                        help='0: quiet; 1: a decoding progress bar on a terminal; 2: also Keras fit progress '
                             '(a bar on a terminal, a line per epoch when piped)')
    args = parser.parse_args(argv)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    real = bool(args.checkpoint_dir)

    if args.data_dir:
        for name in ('train.tsv', 'valid.tsv'):
            if not os.path.isfile(os.path.join(args.data_dir, name)):
                parser.error('--data-dir %s has no %s (title<TAB>content per line)' % (args.data_dir, name))
        train = use_first(load_pairs(os.path.join(args.data_dir, 'train.tsv')), args.num_train,
                          'training pairs', '--num-train')
        valid = use_first(load_pairs(os.path.join(args.data_dir, 'valid.tsv')), args.num_valid or 1000,
                          'validation pairs', '--num-valid')
        source = args.data_dir
    else:
        train = generate_news(args.num_train or 1200, seed=args.seed)
        valid = generate_news(args.num_valid or 100, seed=args.seed + 1000)
        source = 'generated news'
    large = real or bool(args.data_dir)
    maxlen = args.maxlen or (256 if large else 72)
    title_maxlen = args.title_maxlen or (32 if large else 16)
    epochs = args.epochs or (20 if real else 3)
    batch_size = args.batch_size or (16 if real else 32)
    lr = args.lr or (1e-5 if real else 3e-3)
    if title_maxlen > maxlen - 3:  # [CLS] content [SEP] needs at least one content token
        parser.error('--title-maxlen %d leaves no room for the content in --maxlen %d tokens'
                     % (title_maxlen, maxlen))
    print('task: %s — %d train / %d valid (title, content) pairs, maxlen %d, titles ≤ %d tokens'
          % (source, len(train), len(valid), maxlen, title_maxlen))

    if real:
        paths = find_checkpoint_files(args.checkpoint_dir)
    else:  # a tiny BERT in Google's format whose vocabulary covers the text
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='autotitle_')
        vocab = build_vocab(title + content for title, content in train + valid)
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=vocab, seed=args.seed,
                                       hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=256, max_position_embeddings=max(64, maxlen + 8))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
    # a simplified vocabulary (no [unused*], no ##-continuations of CJK characters) → smaller softmax
    token_dict, keep_tokens = load_vocab(paths['vocab'], simplified=True,
                                         startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'])
    tokenizer = Tokenizer(token_dict, do_lower_case=True)
    print('vocabulary: %d tokens kept of the checkpoint\'s vocabulary' % len(keep_tokens))

    transformer = build_transformer_model(paths['config'], paths['checkpoint'], application='unilm',
                                          keep_tokens=keep_tokens, return_keras_model=False)
    model = transformer.model
    output = CrossEntropy(2)(model.inputs + model.outputs)
    train_model = keras.Model(model.inputs, output)
    train_model.compile(optimizer=keras.optimizers.Adam(lr))  # the Loss layer supplies the loss

    autotitle = AutoTitle(transformer, tokenizer, maxlen, title_maxlen, args.no_repeat_ngram_size)
    train_generator = data_generator(train, tokenizer, maxlen, batch_size)
    train_start = time.perf_counter()
    show = valid[0]
    for epoch in range(epochs):
        # forfit() already shuffles (DataGenerator.sample); a dataset cannot be shuffled by Keras
        history = train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1,
                                  shuffle=False, verbose=progress_verbose(1) if args.verbose > 1 else 0)
        print('epoch %d/%d: loss %.4f; %s → %s'
              % (epoch + 1, epochs, history.history['loss'][-1], show[1][:40], autotitle.generate(show[1], args.topk)))
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    scores, generated = evaluate(autotitle, valid, topk=args.topk, progress=args.verbose > 0)
    eval_seconds = time.perf_counter() - eval_start
    base = baselines(train, valid)
    print('valid (%d pairs, beam topk %d): ROUGE-1 %.4f, ROUGE-2 %.4f, ROUGE-L %.4f, BLEU %.4f'
          % (len(valid), args.topk, scores['rouge-1'], scores['rouge-2'], scores['rouge-l'], scores['bleu']))
    for name, label in (('fixed', 'fixed title %r' % base['fixed_title']), ('lead', 'lead of the content')):
        print('baseline, %s: ROUGE-1 %.4f, ROUGE-2 %.4f, ROUGE-L %.4f, BLEU %.4f'
              % (label, base[name]['rouge-1'], base[name]['rouge-2'], base[name]['rouge-l'], base[name]['bleu']))
    for (title, content), title_out in list(zip(valid, generated))[:5]:
        print('  %s\n    reference: %s\n    generated: %s' % (content, title, title_out))
    seconds = time.perf_counter() - start
    print('done in %.1f s (training %.1f s, decoding %d texts %.1f s)'
          % (seconds, train_seconds, len(valid), eval_seconds))
    return {'rouge_1': scores['rouge-1'], 'rouge_2': scores['rouge-2'], 'rouge_l': scores['rouge-l'],
            'bleu': scores['bleu'], 'baseline_fixed': base['fixed'], 'baseline_lead': base['lead'],
            'generated': generated, 'references': [title for title, _ in valid], 'seconds': seconds,
            'train_seconds': train_seconds, 'eval_seconds': eval_seconds, 'vocab_size': len(keep_tokens)}


if __name__ == '__main__':
    main()
