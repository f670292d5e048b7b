"""Sentence similarity: train a BERT sentence encoder with in-batch AM-Softmax (kexue.fm/archives/5743).

    python examples/task_sentence_similarity_am_softmax.py           # tiny random BERT, generated groups
    python examples/task_sentence_similarity_am_softmax.py --data-dir LCQMC --checkpoint-dir chinese_L-12_H-768_A-12

Each training batch holds pairs of similar questions (rows 2i and 2i+1). The encoder's [CLS] vector
is L2-normalised; for each row the other rows of the batch are the class prototypes, its partner is
the target, and the loss is AM-Softmax: softmax over s·cos with the margin m subtracted from the
target cosine only (s = 30, m = 0.35 by default). Questions of the same group that are not partners
are left out of each other's softmax.

Evaluation on held-out data: retrieval accuracy (is a query's nearest neighbour by cosine a
paraphrase of it?) and the Spearman correlation between cosine and the 0/1 similarity label of
held-out pairs.

With no arguments: writes a tiny Google-format BERT checkpoint and generates groups of paraphrased
customer-service questions (intent × product); the evaluation groups are never seen in training.
--data-dir reads LCQMC files `text_a<TAB>text_b<TAB>label` (train.txt, and test.txt or dev.txt): the
positive training pairs are the similar pairs, the evaluation file gives the Spearman pairs, and
its positive pairs the retrieval queries (query text_a, candidates all text_b).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from bert4keras_ext.console import (
    existing_dir, int_at_least, positive_float, positive_int, progress_verbose, quiet_tensorflow,
)

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

_INTENTS = {
    'password': ['怎么修改{X}的密码', '{X}密码怎么改', '如何更改{X}密码', '我想换一下{X}的密码', '{X}的密码在哪里修改'],
    'cancel': ['怎么注销{X}', '{X}怎么销户', '如何取消{X}', '我不想用{X}了，怎么注销', '{X}在哪里注销'],
    'fee': ['{X}收费吗', '使用{X}要花钱吗', '{X}是免费的吗', '{X}需要付费吗', '开通{X}多少钱'],
    'open': ['怎么开通{X}', '{X}如何开通', '我想办理{X}', '在哪里可以开通{X}', '{X}怎么申请'],
    'login': ['{X}登录不上怎么办', '为什么{X}无法登录', '{X}登不上去了', '登录{X}一直失败', '{X}登录出错'],
    'limit': ['{X}每天限额多少', '{X}的额度是多少', '{X}最多能转多少钱', '{X}单笔限额是多少', '怎么提高{X}额度'],
}
_PRODUCTS = ['微信', '支付宝', '网银', '信用卡', '手机银行', '邮箱', '会员', '花呗', '储蓄卡', '医保卡', '公积金',
             '社保账户']


def generate_groups(seed=0, held_out=0.25):
    """(train groups, eval groups): lists of paraphrase lists, one group per (intent, product);
    a random `held_out` fraction of the groups is kept for evaluation."""
    rng = np.random.RandomState(seed)
    groups = [[t.format(X=product) for t in templates] for templates in _INTENTS.values() for product in _PRODUCTS]
    order = rng.permutation(len(groups))
    cut = int(len(groups) * held_out)
    return [groups[i] for i in order[cut:]], [groups[i] for i in order[:cut]]


def load_lcqmc(path, limit=None):
    pairs = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line:
                continue
            parts = line.split('\t')
            if len(parts) != 3 or parts[2] not in ('0', '1'):
                raise ValueError('%s:%d: expected "text_a<TAB>text_b<TAB>0|1", got %r' % (path, number, line[:80]))
            pairs.append((parts[0], parts[1], int(parts[2])))
            if limit and len(pairs) >= limit:
                break
    return pairs


def pair_batches(groups, num_pairs, pairs_per_batch, rng):
    """Texts and group ids laid out as [a0, b0, a1, b1, ...], each batch drawing distinct groups."""
    texts, ids = [], []
    eligible = [g for g in range(len(groups)) if len(groups[g]) >= 2]
    if not eligible:
        raise ValueError('pair_batches: no group has two texts')
    per_batch = min(pairs_per_batch, len(eligible))
    for _ in range(max(num_pairs // per_batch, 1)):
        for g in rng.choice(eligible, size=per_batch, replace=False):
            a, b = rng.choice(len(groups[g]), size=2, replace=False)
            texts += [groups[g][a], groups[g][b]]
            ids += [g, g]
    return texts, np.array(ids), 2 * per_batch


def eval_pairs_from_groups(groups, rng, num_pairs=400):
    """Balanced (a, b, label) pairs: positives within a group, negatives across groups."""
    pairs = []
    for _ in range(num_pairs // 2):
        g = rng.randint(len(groups))
        a, b = rng.choice(len(groups[g]), size=2, replace=False)
        pairs.append((groups[g][a], groups[g][b], 1))
        g2 = (g + 1 + rng.randint(len(groups) - 1)) % len(groups)
        pairs.append((groups[g][a], groups[g2][rng.randint(len(groups[g2]))], 0))
    return pairs


def retrieval_accuracy(queries, query_groups, candidates, candidate_groups, exclude_identical=False):
    """Share of queries whose most similar candidate (cosine of unit vectors) is in their group.
    `exclude_identical`: queries and candidates are the same list; a text may not retrieve itself."""
    sims = queries @ candidates.T
    if exclude_identical:
        np.fill_diagonal(sims, -np.inf)
    best = sims.argmax(1)
    return float(np.mean(np.asarray(candidate_groups)[best] == np.asarray(query_groups)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='LCQMC folder (train.txt, test.txt or dev.txt)')
    parser.add_argument('--checkpoint-dir', type=existing_dir,
                        help='folder with bert_config.json, bert_model.ckpt*, vocab.txt')
    parser.add_argument('--epochs', type=positive_int, help='passes over the generated pairs (default 3 generated, 1 real)')
    parser.add_argument('--num-train', type=positive_int,
                        help='training pairs per epoch (default 800 generated, the positive pairs of train.txt real)')
    parser.add_argument('--pairs-per-batch', type=int_at_least(2), default=None,
                        help='pairs per batch (default 8; at least 2: the other pairs are the negatives)')
    parser.add_argument('--maxlen', type=positive_int, help='max tokens (default 24 generated, 64 real)')
    parser.add_argument('--lr', type=positive_float, help='Adam learning rate (default 1e-3 tiny, 2e-5 real)')
    parser.add_argument('--scale', type=positive_float, default=30.0, help='AM-Softmax scale s')
    parser.add_argument('--margin', type=float, default=0.35, help='AM-Softmax margin m')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)

    import functools

    import keras

    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.demo import build_vocab
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.losses import in_batch_am_softmax_loss, spearman_correlation
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.optimizers import Adam
    from bert4keras_ext.snippets import sequence_padding
    from bert4keras_ext.tokenizers import Tokenizer

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    real = bool(args.checkpoint_dir)
    if args.data_dir:
        train_path = os.path.join(args.data_dir, 'train.txt')
        eval_path = next((os.path.join(args.data_dir, n) for n in ('test.txt', 'dev.txt')
                          if os.path.isfile(os.path.join(args.data_dir, n))), None)
        if not os.path.isfile(train_path) or eval_path is None:
            parser.error('--data-dir %s needs train.txt and test.txt (or dev.txt)' % args.data_dir)
        train_groups = [[a, b] for a, b, label in load_lcqmc(train_path) if label == 1]
        eval_pairs = load_lcqmc(eval_path)
        positives = [(a, b) for a, b, label in eval_pairs if label == 1]
        source = args.data_dir
    else:
        train_groups, eval_groups = generate_groups(seed=args.seed)
        eval_pairs = eval_pairs_from_groups(eval_groups, rng)
        source = 'generated question groups (%d train / %d held-out groups)' % (len(train_groups), len(eval_groups))
    maxlen = args.maxlen or (64 if real or args.data_dir else 24)
    epochs = args.epochs or (1 if args.data_dir else 3)
    lr = args.lr or (2e-5 if real else 1e-3)
    num_pairs = args.num_train or (sum(len(g) // 2 for g in train_groups) if args.data_dir else 800)
    print('task: %s, maxlen %d, s=%g, m=%g' % (source, maxlen, args.scale, args.margin))

    all_texts = [t for g in train_groups for t in g] + [t for a, b, _ in eval_pairs for t in (a, b)]
    if not args.data_dir:
        all_texts += [t for g in eval_groups for t in g]
    if real:
        config_path = os.path.join(args.checkpoint_dir, 'bert_config.json')
        checkpoint_path = os.path.join(args.checkpoint_dir, 'bert_model.ckpt')
        vocab_path = os.path.join(args.checkpoint_dir, 'vocab.txt')
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='am_softmax_')
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=build_vocab(all_texts),
                                       seed=args.seed, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=256, max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        config_path, checkpoint_path, vocab_path = paths['config'], paths['checkpoint'], paths['vocab']
    tokenizer = Tokenizer(vocab_path, do_lower_case=True)

    def encode(texts):
        return sequence_padding([tokenizer.encode(t, maxlen=maxlen)[0] for t in texts], length=maxlen)

    bert = build_transformer_model(config_path, checkpoint_path)
    encoder = keras.Model(bert.inputs, ExtractToken(0, name='CLS')(bert.output))
    loss = functools.partial(in_batch_am_softmax_loss, scale=args.scale, margin=args.margin)
    loss.__name__ = 'in_batch_am_softmax_loss'
    encoder.compile(optimizer=Adam(lr), loss=loss)

    def embed(texts):
        ids = encode(texts)
        vectors = encoder.predict([ids, np.zeros_like(ids)], batch_size=128, verbose=0)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def evaluate():
        a = embed([p[0] for p in eval_pairs])
        b = embed([p[1] for p in eval_pairs])
        spearman = spearman_correlation((a * b).sum(1), [p[2] for p in eval_pairs])
        if args.data_dir:
            q, c = embed([p[0] for p in positives]), embed([p[1] for p in positives])
            ids = np.arange(len(positives))
            accuracy = retrieval_accuracy(q, ids, c, ids)
        else:
            texts = [t for g in eval_groups for t in g]
            ids = [i for i, g in enumerate(eval_groups) for _ in g]
            vectors = embed(texts)
            accuracy = retrieval_accuracy(vectors, ids, vectors, ids, exclude_identical=True)
        return accuracy, spearman

    before = evaluate()
    for epoch in range(epochs):  # fresh random pairs every epoch; batches must stay in order (no shuffle)
        texts, group_ids, batch_size = pair_batches(train_groups, num_pairs, args.pairs_per_batch or 8, rng)
        ids = encode(texts)
        if not args.quiet:
            print('epoch %d/%d' % (epoch + 1, epochs))
        encoder.fit([ids, np.zeros_like(ids)], group_ids, batch_size=batch_size, epochs=1, shuffle=False,
                    verbose=0 if args.quiet else progress_verbose(1))
    accuracy, spearman = evaluate()
    elapsed = time.perf_counter() - start
    print('held-out retrieval accuracy (top-1): %.4f (untrained encoder %.4f)' % (accuracy, before[0]))
    print('held-out Spearman(cosine, label): %.4f (untrained encoder %.4f) on %d pairs'
          % (spearman, before[1], len(eval_pairs)))
    print('done in %.1f s' % elapsed)
    return {'retrieval_accuracy': accuracy, 'spearman': spearman, 'untrained_retrieval_accuracy': before[0],
            'untrained_spearman': before[1], 'seconds': elapsed}


if __name__ == '__main__':
    main()
    sys.exit(0)
