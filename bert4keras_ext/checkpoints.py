"""Google-format (TF1) checkpoint I/O: read, check, write, and make tiny random ones.

The released Chinese checkpoints (Google BERT, HIT RoBERTa-wwm, WoBERT, ALBERT "google" releases) are
TF1 name-based bundles `bert_model.ckpt.{index,data-*}` next to `bert_config.json` and `vocab.txt`.
This module reads them with `tf.train.load_checkpoint`, and writes them with `tf.raw_ops.SaveV2`, which
stores exactly the names it is given (so files written here load in any tool that reads Google's
format, and vice versa).

The download / verify CLI for the public checkpoints lives in `bert4keras_ext.manifest`; it is reachable
as ``python -m bert4keras_ext.checkpoints {list,download,verify,sha256}``.
"""
import glob
import json
import os

import numpy as np

from bert4keras_ext.formats import (
    ADAM_SLOTS, GLOBAL_STEP, detect_family, family_of, is_optimizer_slot, variable_shapes,
)

__all__ = [
    'CheckpointError', 'CheckpointMismatchError', 'resolve_checkpoint_path', 'CheckpointReader',
    'load_config', 'write_checkpoint', 'make_random_checkpoint', 'google_variable_shapes',
    'detect_checkpoint_family', 'DEFAULT_TINY_SIZES', 'find_checkpoint_files', 'default_vocab',
]


class CheckpointError(ValueError):
    """A checkpoint file or config cannot be used as given (missing file, unreadable, bad config)."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's variables do not match the model; the message lists every offending variable."""


def resolve_checkpoint_path(path):
    """Turn a checkpoint prefix, an `.index`/`.data-*` file or a directory into the bundle prefix.

    Raises CheckpointError naming what was looked for when nothing usable is found.
    """
    if path is None:
        raise CheckpointError('checkpoint_path is None; expected the prefix of a TF checkpoint, '
                              'e.g. chinese_L-12_H-768_A-12/bert_model.ckpt')
    path = os.fspath(path)
    if os.path.isdir(path):
        indexes = sorted(glob.glob(os.path.join(path, '*.index')))
        if len(indexes) == 1:
            return indexes[0][:-len('.index')]
        if not indexes:
            raise CheckpointError('no checkpoint (*.index) found in directory %r' % path)
        raise CheckpointError('several checkpoints in directory %r: %s; pass one prefix explicitly'
                              % (path, ', '.join(os.path.basename(i) for i in indexes)))
    for suffix in ('.index', '.meta'):
        if path.endswith(suffix):
            path = path[:-len(suffix)]
    if '.data-' in os.path.basename(path):
        path = path[:path.rindex('.data-')]
    if not os.path.exists(path + '.index'):
        raise CheckpointError('checkpoint %r not found: expected the file %s.index (and its .data-* shards)'
                              % (path, path))
    return path


def find_checkpoint_files(directory):
    """The (config, checkpoint prefix, vocab) of an unpacked release folder, e.g. chinese_L-12_H-768_A-12/.

    Looks for `*config*.json`, one `*.index` bundle and `vocab*.txt`; raises CheckpointError listing
    what is missing or ambiguous.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise CheckpointError('checkpoint directory %r does not exist' % directory)
    configs = sorted(glob.glob(os.path.join(directory, '*config*.json')))
    vocabs = sorted(glob.glob(os.path.join(directory, 'vocab*.txt')))
    problems = []
    if len(configs) != 1:
        problems.append('expected one *config*.json, found %s' % ([os.path.basename(c) for c in configs] or 'none'))
    if len(vocabs) != 1:
        problems.append('expected one vocab*.txt, found %s' % ([os.path.basename(v) for v in vocabs] or 'none'))
    try:
        prefix = resolve_checkpoint_path(directory)
    except CheckpointError as e:
        problems.append(str(e))
    if problems:
        raise CheckpointError('%s is not a usable checkpoint folder: %s' % (directory, '; '.join(problems)))
    return {'config': configs[0], 'checkpoint': prefix, 'vocab': vocabs[0], 'dir': directory}


class CheckpointReader:
    """Read-only view of a TF checkpoint's model variables: `names`, `shape(name)`, `get(name)`.

    Optimizer slots and training counters (`formats.is_optimizer_slot`) are left out.
    """

    def __init__(self, path):
        import tensorflow as tf
        self.path = resolve_checkpoint_path(path)
        try:
            self._reader = tf.train.load_checkpoint(self.path)
        except Exception as e:  # TF raises several types for corrupt files
            raise CheckpointError('cannot read checkpoint %r: %s' % (self.path, e)) from e
        self.shapes = {name: tuple(shape) for name, shape in self._reader.get_variable_to_shape_map().items()
                       if not is_optimizer_slot(name)}

    @property
    def names(self):
        return sorted(self.shapes)

    def __contains__(self, name):
        return name in self.shapes

    def shape(self, name):
        return self.shapes.get(name)

    def get(self, name):
        """The variable's value as a numpy array; a damaged data file raises CheckpointError naming it."""
        try:
            return self._reader.get_tensor(name)
        except Exception as e:  # DataLoss (checksum), IndexError ("Read less bytes than requested"), ...
            raise CheckpointError(self._damaged_message(name, e)) from e

    def find_damaged(self, names=None):
        """Read every variable (or `names`) in full; return (name, error text) of the first unreadable one, or None.

        TensorFlow checks each tensor's bytes against the CRC32C stored in the index as it reads them, so
        a truncated, zeroed or otherwise corrupted data file is caught here, tensor by tensor (one tensor
        in memory at a time).
        """
        for name in sorted(self._reader.get_variable_to_shape_map()) if names is None else names:
            try:
                self._reader.get_tensor(name)
            except Exception as e:
                return name, _first_line(e)
        return None

    def _damaged_message(self, name, error):
        return ('checkpoint %s is damaged: variable %r cannot be read from its data file (%s): %s. The file '
                'is probably truncated or corrupted: download it again, and check it with '
                '`python -m bert4keras_ext checkpoints verify NAME DIR` (which reads every tensor and checks '
                'its checksum).' % (self.path, name, ', '.join(self.data_files()) or 'no .data-* file found',
                                    _first_line(error)))

    def data_files(self):
        """The bundle's `.data-*` shard paths."""
        return sorted(glob.glob(glob.escape(self.path) + '.data-*'))


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return '%s: %s' % (type(error).__name__, text.splitlines()[0])


def detect_checkpoint_family(names):
    """Guess which `model=` a set of checkpoint variable names belongs to (for error hints).

    Returns one of 'bert', 'albert', 'albert_brightmart_legacy', 'electra', 'unknown'
    (`formats.detect_family`).
    """
    return detect_family(names)


def load_config(config_path):
    """Read a `bert_config.json` / `albert_config.json` into a dict, with clear errors."""
    if not os.path.exists(config_path):
        raise CheckpointError('config file %r not found (expected e.g. bert_config.json next to the checkpoint)'
                              % config_path)
    try:
        with open(config_path, encoding='utf-8') as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError('config file %r is not valid JSON: %s' % (config_path, e)) from e
    if not isinstance(config, dict):
        raise CheckpointError('config file %r must hold a JSON object, found %s' % (config_path, type(config).__name__))
    return config


def write_checkpoint(prefix, arrays):
    """Write {name: array} as a TF checkpoint bundle with exactly these variable names.

    Also writes a `checkpoint` state file so that `tf.train.latest_checkpoint(dir)` finds the bundle.
    """
    import tensorflow as tf
    prefix = os.fspath(prefix)
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    names = sorted(arrays)
    tensors = [tf.constant(np.asarray(arrays[n])) for n in names]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names), tensors=tensors)
    with open(os.path.join(directory, 'checkpoint'), 'w', encoding='utf-8') as f:
        base = os.path.basename(prefix)
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (base, base))
    return prefix


# ---------------------------------------------------------------------------------------------------
# Tiny random checkpoints in the exact Google naming
# ---------------------------------------------------------------------------------------------------
DEFAULT_TINY_SIZES = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=64, type_vocab_size=2,
)

# Frequent Chinese characters for the default tiny vocab (enough for the demo's generated reviews).
_COMMON_CHINESE = (
    '的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么'
    '心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分'
    '将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重'
    '被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住'
    '员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制'
    '解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非'
    '流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量'
    '空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委'
    '早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲'
    '布杀微怕母调局根曾准团段终乐切级克精哪官示冷域差养买卖价质量服务态度环境价格便宜贵差评好评推荐满意失望喜欢'
    '讨厌舒适干净脏乱吵安静方便快递物流包装正品假货质感颜色味道酒店宾馆房间早餐前台书本作者故事内容印刷纸张电脑'
    '屏幕键盘电池系统速度散热声音手机相机衣服鞋子尺码码漂亮难看值得推荐购买退货换货客服态度热情冷漠耐心垃圾糟糕'
    '不错一般还行非常特别比较有点太很挺超级真心绝对完全总体整体感觉觉得认为发现希望建议下次再也不会还会'
)


def default_vocab(extra_tokens=()):
    """A small vocab laid out like Google's Chinese vocab: [PAD], [unused1-99], [UNK], [CLS], [SEP],
    [MASK], then punctuation, digits, Latin letters, frequent CJK characters and a few wordpieces."""
    tokens = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]']
    seen = set(tokens)

    def add(token):
        if token not in seen:
            seen.add(token)
            tokens.append(token)

    for ch in '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~，。！？、；：“”‘’（）《》【】…—～·':
        add(ch)
    for ch in '0123456789abcdefghijklmnopqrstuvwxyz':
        add(ch)
    for ch in _COMMON_CHINESE:
        add(ch)
    for piece in ('the', 'and', 'good', 'bad', 'ok', '##s', '##ed', '##ing', '##er', '##ly'):
        add(piece)
    for token in extra_tokens:
        add(token)
    return tokens


def google_variable_shapes(model='bert', vocab_size=None, hidden_size=None, num_hidden_layers=None,
                           num_attention_heads=None, intermediate_size=None, max_position_embeddings=None,
                           type_vocab_size=2, embedding_size=None, **unused):
    """{variable name: shape} of a released Google checkpoint of this family and size (`formats.variable_shapes`).

    model: 'bert' / 'roberta' / 'wobert' (BERT layout) or 'albert' / 'albert_unshared' (Google ALBERT layout:
    factorised embedding + one shared block). A size not given stays None in the shapes.
    """
    family = family_of(model)
    if family == 'bert' and embedding_size not in (None, hidden_size):
        raise CheckpointError('a BERT-layout checkpoint has embedding_size == hidden_size; got %s vs %s'
                              % (embedding_size, hidden_size))
    return variable_shapes(family, dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
        type_vocab_size=type_vocab_size, embedding_size=embedding_size))


def make_random_checkpoint(out_dir, model='bert', vocab=None, seed=0, initializer_range=0.02,
                           hidden_act='gelu', include_optimizer_slots=False, **sizes):
    """Write a tiny random checkpoint with exactly the released Google variable names.

    Creates `out_dir/bert_model.ckpt.*`, `out_dir/bert_config.json` and `out_dir/vocab.txt`.

    Args:
        out_dir: directory to create/overwrite.
        model: 'bert' (also 'roberta', 'wobert') or 'albert' (also 'albert_unshared').
        vocab: list of tokens; default `default_vocab()` (Google Chinese layout, ~1,000 tokens).
        seed: numpy seed; the same seed gives byte-identical weights.
        initializer_range: stddev of the normal weights (as in `bert_config.json`).
        include_optimizer_slots: also write `*/adam_m`, `*/adam_v` and `global_step`, as some
            released checkpoints do (the loader must ignore them).
        **sizes: hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
            max_position_embeddings, type_vocab_size, embedding_size (ALBERT); defaults are tiny.
    Returns:
        dict with the paths: {'config': ..., 'checkpoint': ..., 'vocab': ..., 'dir': ...}.
    """
    unknown = set(sizes) - set(DEFAULT_TINY_SIZES) - {'embedding_size'}
    if unknown:
        raise TypeError('make_random_checkpoint: unknown size argument(s) %s; expected some of %s'
                        % (sorted(unknown), sorted(set(DEFAULT_TINY_SIZES) | {'embedding_size'})))
    vocab = list(vocab) if vocab is not None else default_vocab()
    config = dict(DEFAULT_TINY_SIZES)
    if family_of(model) == 'albert':
        config['embedding_size'] = 16
    config.update(sizes)
    if config['hidden_size'] % config['num_attention_heads']:
        raise ValueError('hidden_size (%d) must be divisible by num_attention_heads (%d)'
                         % (config['hidden_size'], config['num_attention_heads']))
    config.update(vocab_size=len(vocab), hidden_act=hidden_act, initializer_range=initializer_range,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    shapes = google_variable_shapes(model=model, **config)
    rng = np.random.RandomState(seed)
    arrays = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith('/gamma'):
            value = 1.0 + 0.1 * rng.randn(*shape)
        elif name.endswith(('/beta', '/bias')) or name.endswith('output_bias'):
            value = 0.1 * rng.randn(*shape)
        else:
            value = initializer_range * rng.randn(*shape)
        arrays[name] = value.astype('float32')
    if include_optimizer_slots:
        for name in list(arrays):
            for slot in ADAM_SLOTS:
                arrays[name + '/' + slot] = np.zeros_like(arrays[name])
        arrays[GLOBAL_STEP] = np.array(1000, dtype='int64')
    os.makedirs(out_dir, exist_ok=True)
    prefix = write_checkpoint(os.path.join(out_dir, 'bert_model.ckpt'), arrays)
    config_path = os.path.join(out_dir, 'bert_config.json')
    with open(config_path, 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2, sort_keys=True)
    vocab_path = os.path.join(out_dir, 'vocab.txt')
    with open(vocab_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(vocab) + '\n')
    return {'config': config_path, 'checkpoint': prefix, 'vocab': vocab_path, 'dir': out_dir}


if __name__ == '__main__':  # the CLI lives in manifest.py (which imports this module)
    from bert4keras_ext.manifest import main
    raise SystemExit(main(prog='python -m bert4keras_ext.checkpoints'))
