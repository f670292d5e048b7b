"""Paths and tiny data for the bert4keras-style scripts in this folder.

Each script here is a port of one of bert4keras' own examples (examples/ in bojone/bert4keras), written
in its style — module-level code, `DataGenerator` subclasses, `Loss` layers, evaluator callbacks,
`AutoRegressiveDecoder` subclasses — with only the imports pointing at bert4keras_ext. Instead of a
released checkpoint and a competition data set, a script takes a tiny random Google-format checkpoint
and small generated data, so the whole folder runs in the test suite (tests/test_bert4keras_scripts.py).

The test runs every script in its own process with ``BERT4KERAS_SCRIPT_DIR`` set to a work folder of
its own (and ``BERT4KERAS_SCRIPT_CHECKPOINTS`` to a folder of checkpoints shared by all scripts). Run by hand, a script makes its own folder under /tmp and says so.
"""
import os
import sys
import tempfile

WORK_DIR = os.environ.get('BERT4KERAS_SCRIPT_DIR')
if not WORK_DIR:
    WORK_DIR = tempfile.mkdtemp(prefix='bert4keras_script_')
    print('writing to %s' % WORK_DIR, file=sys.stderr)
# The tiny checkpoints may be shared by several scripts (the test runs each script in a folder of its
# own, so data files such as random_order.json never collide, and makes the checkpoints once).
CHECKPOINT_DIR = os.environ.get('BERT4KERAS_SCRIPT_CHECKPOINTS') or WORK_DIR


def _checkpoint(model, name, **sizes):
    """A tiny random checkpoint of `model` ('bert' / 'albert') in WORK_DIR/name, made once."""
    from bert4keras_ext.checkpoints import make_random_checkpoint
    out_dir = os.path.join(CHECKPOINT_DIR, name)
    if not os.path.exists(os.path.join(out_dir, 'bert_config.json')):
        make_random_checkpoint(out_dir, model=model, seed=1, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=48, max_position_embeddings=64, **sizes)
    return (os.path.join(out_dir, 'bert_config.json'), os.path.join(out_dir, 'bert_model.ckpt'),
            os.path.join(out_dir, 'vocab.txt'))


def bert_paths():
    """(config_path, checkpoint_path, dict_path) of a 2-layer, hidden-32 BERT with the Chinese vocab layout."""
    return _checkpoint('bert', 'tiny_bert')


def albert_paths():
    """(config_path, checkpoint_path, dict_path) of a tiny ALBERT (Google's release naming)."""
    return _checkpoint('albert', 'tiny_albert')


def data_path(name):
    """Where a script writes (then reads back) its small data file."""
    return os.path.join(WORK_DIR, name)


def vocab_chars(dict_path, limit=None):
    """The single CJK characters of the vocabulary (to generate text the tokenizer knows)."""
    chars = []
    with open(dict_path, encoding='utf-8') as f:
        for line in f:
            token = line.strip()
            if len(token) == 1 and '\u4e00' <= token <= '\u9fff':
                chars.append(token)
    return chars[:limit] if limit else chars
