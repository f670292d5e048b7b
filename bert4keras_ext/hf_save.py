"""Write a built model as a Hugging Face model directory (config.json + model.safetensors), without PyTorch.

`write_hf_directory` (called by `Transformer.save_weights_as_hf`) takes the model's weights under their
Google checkpoint names, renames and transposes them through `formats.huggingface`'s tables, and writes
the layout that the family's `transformers` class for the heads present loads without missing or
unexpected keys (`BertForPreTraining` with MLM + NSP, `BertForMaskedLM`, `BertModel` without heads, and the
ALBERT, RoFormer, NEZHA and ELECTRA equivalents). The MLM decoder is tied to the word embeddings, so it is
not written: transformers ties it on load. Tensors that are functions of the config (RoFormer's rotary
sinusoid table) are computed and written so that no key is missing. `hf_checkpoints` reads such a
directory back.
"""
import json
import os
import shutil

import numpy as np

from bert4keras_ext.backend import gelu_erf, gelu_tanh, get_activation, keras
from bert4keras_ext.formats import FACTORISED_ONLY, HEAD_LAYERS
from bert4keras_ext.formats import google as google_format
from bert4keras_ext.formats import huggingface as hf

__all__ = ['write_hf_directory', 'hf_config_for']


def _hf_activation(hidden_act):
    function = get_activation(hidden_act)
    if function is gelu_erf:
        return 'gelu'
    if function is gelu_tanh:
        return 'gelu_new'
    name = hidden_act if isinstance(hidden_act, str) else keras.activations.serialize(function)
    name = name if isinstance(name, str) else None
    if name in hf.ACTIVATIONS_TO_HF:
        return hf.ACTIVATIONS_TO_HF[name]
    raise ValueError('hidden_act %r has no Hugging Face equivalent; expected one of %s'
                     % (hidden_act, sorted(hf.ACTIVATIONS_TO_HF)))


def _check_representable(transformer):
    problems = []
    head_size = transformer.hidden_size // transformer.num_attention_heads
    if transformer.attention_head_size != head_size or transformer.attention_key_size != head_size:
        problems.append('attention_head_size/attention_key_size must be hidden_size / num_attention_heads')
    if getattr(transformer, 'attention_normalization', 'softmax') != 'softmax':
        problems.append("attention_scale='log_n' (transformers scales by 1/sqrt(d) only)")
    if getattr(transformer, 'residual_attention_scores', False):
        problems.append('residual_attention_scores=True (RealFormer)')
    if getattr(transformer, 'shared_segment_embeddings', False):
        problems.append('shared_segment_embeddings=True')
    if getattr(transformer, 'with_pool', False) not in (False, True, 'tanh'):
        problems.append('with_pool=%r (the pooler of transformers uses tanh)' % (transformer.with_pool,))
    if getattr(transformer, 'layer_norm_conds', [None])[0] is not None:
        problems.append('layer_norm_cond (Conditional Layer Normalization)')
    if problems:
        raise ValueError('this model cannot be written in the Hugging Face layout: ' + '; '.join(problems))


def hf_config_for(transformer, family, architecture):
    """The config.json dict of a built Transformer (sizes, activation, epsilon, dropout, model type)."""
    spec = hf.FAMILIES[family]
    config = {
        'architectures': [architecture], 'model_type': spec['model_types'][0],
        'vocab_size': int(transformer.vocab_size), 'hidden_size': int(transformer.hidden_size),
        'num_hidden_layers': int(transformer.num_hidden_layers),
        'num_attention_heads': int(transformer.num_attention_heads),
        'intermediate_size': int(transformer.intermediate_size), 'hidden_act': _hf_activation(transformer.hidden_act),
        'max_position_embeddings': int(transformer.max_position),
        'type_vocab_size': int(transformer.segment_vocab_size),
        'hidden_dropout_prob': float(transformer.dropout_rate),
        'attention_probs_dropout_prob': float(transformer.attention_dropout_rate),
        'initializer_range': 0.02, 'layer_norm_eps': float(transformer.layer_norm_epsilon), 'pad_token_id': 0,
    }
    for key in spec['settings']:  # embedding_size, NEZHA's max_relative_position
        config[key] = int(getattr(transformer, key))
    config.update(spec['fixed_config'])
    return config


def _rotary_sinusoid(transformer):
    """transformers' RoFormer table (max_position_embeddings, head_size): row p is sin(p·θ_i) for the
    head_size / 2 angles θ_i = 10000^(-2i/head_size), then cos(p·θ_i) (not interleaved)."""
    head_size = transformer.hidden_size // transformer.num_attention_heads
    theta = np.power(10000.0, -2.0 * np.arange(head_size // 2) / head_size)
    angles = np.arange(transformer.max_position, dtype='float64')[:, None] * theta[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype('float32')


_DERIVED = {'rotary_sinusoid': _rotary_sinusoid}


def write_hf_directory(directory, transformer, weights, dtype=None, vocab_path=None):
    """Write config.json + model.safetensors (+ vocab.txt) that `transformers` loads.

    Args:
        directory: created if needed; config.json and model.safetensors are overwritten.
        transformer: the built `Transformer` (its family and sizes go into config.json).
        weights: [(Google checkpoint name, numpy array in the Google layout)], one per mapped Keras weight.
        dtype: e.g. 'float16' to store half precision; default: as the weights are.
        vocab_path: a vocab.txt to copy in (the tokenizer files `transformers`' BertTokenizer reads).
    Returns:
        the directory.
    """
    family = getattr(transformer, 'checkpoint_family', 'bert')
    _check_representable(transformer)
    pairs = hf.google_to_hf(family, transformer.num_hidden_layers)  # refuses a family without an HF layout
    spec = hf.FAMILIES[family]
    tensors, keys, unrepresentable, conflicting = {}, set(), [], []
    for google_name, value in weights:
        if google_name not in pairs:
            unrepresentable.append(google_name)
            continue
        hf_name, layout, key = pairs[google_name]
        value = np.asarray(value)
        value = value.T if layout == hf.TRANSPOSED else value
        if hf_name in tensors and not np.array_equal(tensors[hf_name], value):
            conflicting.append(hf_name)  # ALBERT_Unshared after fine-tuning: its layers differ
        tensors[hf_name] = value
        keys.add(key)
    if unrepresentable:
        layers = [key for key in hf.unmapped_layers(family)
                  if set(google_format.variable_names(family, key)) & set(unrepresentable)]
        if layers:
            raise ValueError('%s cannot be written: %s; save_weights_as_checkpoint keeps them'
                             % (type(transformer).__name__, hf.describe_unmapped(family, layers)))
        raise ValueError('%s weights have no place in the Hugging Face %s layout: %s'
                         % (type(transformer).__name__, family, unrepresentable[:6]))
    if conflicting:
        raise ValueError('several layers of this %s write the shared tensor %s with different values: the Hugging '
                         'Face %s layout stores one shared block (save_weights_as_checkpoint keeps per-layer '
                         'weights)' % (type(transformer).__name__, conflicting[0], family))
    if spec.get('always_mapped') and 'Embedding-Mapping' not in keys:
        # HF ALBERT always maps embeddings to hidden_size; with equal sizes the identity is exact
        (weight, _), (bias, _) = hf.table(family)['Embedding-Mapping']
        tensors[weight] = np.eye(transformer.hidden_size, dtype='float32')
        tensors[bias] = np.zeros(transformer.hidden_size, 'float32')
        keys.add('Embedding-Mapping')
    missing = [k for k in hf.table(family) if k not in keys and k not in HEAD_LAYERS and k not in FACTORISED_ONLY]
    if missing:
        raise ValueError('the Hugging Face %s layout needs layers this model does not have: %s'
                         % (family, missing))
    for name, kind in spec.get('derived', {}).items():
        tensors[name] = _DERIVED[kind](transformer)
    architecture, prefixed = hf.architecture_for(family, keys & set(HEAD_LAYERS))
    prefix = spec['backbone_prefix']
    if not prefixed:
        tensors = {(n[len(prefix):] if n.startswith(prefix) else n): v for n, v in tensors.items()}
    tensors = {n: np.ascontiguousarray(v.astype(dtype) if dtype else v) for n, v in tensors.items()}
    from safetensors.numpy import save_file
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, hf.WEIGHTS_FILE), metadata={'format': 'pt'})
    with open(os.path.join(directory, hf.CONFIG_FILE), 'w', encoding='utf-8') as f:
        json.dump(hf_config_for(transformer, family, architecture), f, indent=2, sort_keys=True)
        f.write('\n')
    if vocab_path is not None:
        shutil.copyfile(vocab_path, os.path.join(directory, 'vocab.txt'))
    return directory
