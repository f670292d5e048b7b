"""A damaged checkpoint data file is caught by `verify` and by loading, naming the file and the tensor.

The damage is what a broken download leaves: the data file cut short by 4 KiB, or 400 bytes zeroed
in the middle. TensorFlow stores a CRC32C per tensor in the index; reading every tensor checks it.
"""
import glob
import json
import os

import pytest

from bert4keras_ext import manifest as mf
from bert4keras_ext.checkpoints import CheckpointError, CheckpointReader, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40)


def tiny_checkpoint(path):
    paths = make_random_checkpoint(str(path), model='bert', seed=3, **SIZES)
    data_file, = glob.glob(paths['checkpoint'] + '.data-*')
    return paths, data_file


def entry_for(paths):
    with open(paths['config'], encoding='utf-8') as f:
        config = json.load(f)
    keys = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
            'max_position_embeddings', 'type_vocab_size')
    return {'name': 'tiny', 'model': 'bert', 'description': 'tiny',
            'tokenizer': {'do_lower_case': True, 'pre_tokenize': None},
            'urls': ['https://example.org/tiny.zip'],
            'archive': {'format': 'zip', 'root': '.',
                        'files': {'config': 'bert_config.json', 'checkpoint': 'bert_model.ckpt', 'vocab': 'vocab.txt'}},
            'config': {k: config[k] for k in keys if k in config}, 'sha256': None, 'size_bytes': None,
            'source': 'https://example.org'}


def truncate(data_file, nbytes=4096):
    with open(data_file, 'r+b') as f:
        f.truncate(os.path.getsize(data_file) - nbytes)


def zero_middle(data_file, nbytes=400):
    with open(data_file, 'r+b') as f:
        f.seek(os.path.getsize(data_file) // 2)
        f.write(b'\0' * nbytes)


def test_intact_checkpoint_verifies(tmp_path):
    paths, _ = tiny_checkpoint(tmp_path / 'ok')
    assert mf.verify(entry_for(paths), paths['dir'])['ok']
    assert CheckpointReader(paths['checkpoint']).find_damaged() is None


@pytest.mark.parametrize('damage', [truncate, zero_middle], ids=['truncated_4KiB', 'zeroed_400_bytes'])
def test_verify_reads_every_tensor_and_names_the_file(tmp_path, damage):
    paths, data_file = tiny_checkpoint(tmp_path / 'bad')
    damage(data_file)
    with pytest.raises(mf.VerificationError) as err:
        mf.verify(entry_for(paths), paths['dir'])
    message = str(err.value)
    assert data_file in message and 'is damaged: tensor ' in message and 'download' in message
    name, _ = CheckpointReader(paths['checkpoint']).find_damaged()
    assert 'tensor %s ' % name in message  # the first unreadable tensor, by name


@pytest.mark.parametrize('damage', [truncate, zero_middle], ids=['truncated_4KiB', 'zeroed_400_bytes'])
def test_loading_a_damaged_checkpoint_raises_checkpoint_error(tmp_path, damage):
    paths, data_file = tiny_checkpoint(tmp_path / 'bad')
    damage(data_file)
    with pytest.raises(CheckpointError) as err:  # every tensor is loaded with both heads
        build_transformer_model(paths['config'], paths['checkpoint'], with_nsp=True, with_mlm=True)
    message = str(err.value)
    assert data_file in message and 'damaged' in message and 'checkpoints verify' in message


def test_cli_verify_fails_on_a_damaged_checkpoint(tmp_path, capsys):
    paths, data_file = tiny_checkpoint(tmp_path / 'bad')
    truncate(data_file)
    manifest_path = tmp_path / 'm.json'
    manifest_path.write_text(json.dumps({'format_version': 1, 'checkpoints': [entry_for(paths)]}), encoding='utf-8')
    assert mf.cli(['--manifest', str(manifest_path), 'verify', 'tiny', paths['dir']]) == 1
    err = capsys.readouterr().err
    assert 'failed verification' in err and data_file in err
