"""Every public name of bert4keras 0.11.5's six modules imports from the same path in bert4keras_ext.

The list is bert4keras' own (shared/bert4keras_public_names.json: 'own' = what its modules define,
'examples' = what its example scripts import), less the RoFormer / NEZHA / ELECTRA families and the
T5 / GPT / SentencePiece names, which are other issues. snippets' names are checked in
test_snippets_compat.py, from snippets' source.
"""
import importlib
import inspect
import json
import os

import pytest

NAMES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          'shared', 'bert4keras_public_names.json')

# Copied from that file's 'own' + 'examples' groups (so the test runs without shared/ too).
NAMES = """
backend.Sinusoidal backend.align backend.apply_rotary_position_embeddings backend.attention_normalize
backend.batch_gather backend.custom_objects backend.divisible_temporal_padding backend.dtype backend.flatten
backend.gelu_erf backend.gelu_tanh backend.get_available_gpus backend.graph_mode_decorator backend.is_tf_keras
backend.leaky_relu backend.multilabel_categorical_crossentropy backend.piecewise_linear backend.pool1d
backend.recompute_grad backend.reshape backend.root_mean_square backend.search_layer backend.sequence_masking
backend.set_gelu backend.sinusoidal_embeddings backend.sparse_multilabel_categorical_crossentropy backend.swish
backend.symbolic backend.where backend.K backend.keras
layers.BatchConcat layers.BatchSplit layers.Concatenate1D layers.ConditionalRandomField layers.EfficientGlobalPointer
layers.Embedding layers.FeedForward layers.GlobalAveragePooling1D layers.GlobalMaxPooling1D layers.GlobalPointer
layers.Layer layers.LayerNormalization layers.Loss layers.MaximumEntropyMarkovModel layers.MultiHeadAttention
layers.PositionEmbedding layers.RelativePositionEmbedding layers.ScaleOffset layers.SinusoidalPositionEmbedding
layers.align layers.apply_rotary_position_embeddings layers.attention_normalize layers.integerize_shape
layers.recompute_grad layers.sequence_masking layers.sinusoidal_embeddings
models.ALBERT models.ALBERT_Unshared models.BERT models.BatchConcat models.BatchSplit models.Concatenate1D
models.ConditionalRandomField models.EfficientGlobalPointer models.Embedding models.FeedForward
models.GlobalAveragePooling1D models.GlobalMaxPooling1D models.GlobalPointer models.LM_Mask models.Layer
models.LayerNormalization models.Loss models.MaximumEntropyMarkovModel models.MultiHeadAttention
models.PositionEmbedding models.RelativePositionEmbedding models.ScaleOffset models.SinusoidalPositionEmbedding
models.Transformer models.UniLM_Mask models.align models.apply_rotary_position_embeddings models.attention_normalize
models.build_transformer_model models.data_parallel models.delete_arguments models.extend_with_language_model
models.extend_with_unified_language_model models.get_available_gpus models.insert_arguments models.integerize_shape
models.is_string models.orthogonally_resize models.recompute_grad models.sequence_masking
models.sinusoidal_embeddings models.string_matching
optimizers.AdaFactor optimizers.AdaFactorBase optimizers.AdaFactorV1 optimizers.AdaFactorV2 optimizers.Adam
optimizers.Lion optimizers.LionV2 optimizers.custom_objects optimizers.export_to_custom_objects
optimizers.extend_with_exponential_moving_average optimizers.extend_with_exponential_moving_average_v2
optimizers.extend_with_gradient_accumulation optimizers.extend_with_gradient_accumulation_v2
optimizers.extend_with_layer_adaptation optimizers.extend_with_layer_adaptation_v2
optimizers.extend_with_lazy_optimization optimizers.extend_with_lazy_optimization_v2 optimizers.extend_with_lookahead
optimizers.extend_with_lookahead_v2 optimizers.extend_with_parameter_wise_lr optimizers.extend_with_parameter_wise_lr_v2
optimizers.extend_with_piecewise_linear_lr optimizers.extend_with_piecewise_linear_lr_v2
optimizers.extend_with_weight_decay optimizers.extend_with_weight_decay_v2 optimizers.insert_arguments
optimizers.is_one_of optimizers.is_string optimizers.is_tf_keras optimizers.piecewise_linear optimizers.rms
optimizers.string_matching
tokenizers.Tokenizer tokenizers.TokenizerBase tokenizers.convert_to_unicode tokenizers.is_string tokenizers.load_vocab
tokenizers.lowercase_and_normalize tokenizers.open tokenizers.save_vocab tokenizers.truncate_sequences
snippets.AutoRegressiveDecoder snippets.DataGenerator snippets.ViterbiDecoder snippets.WebServing snippets.is_string
snippets.open snippets.sequence_padding snippets.text_segmentate snippets.to_array snippets.uniout
""".split()

# bert4keras' own argument names for the calls scripts make most (name: parameters that must be accepted)
SIGNATURES = {
    'models.build_transformer_model': ['config_path', 'checkpoint_path', 'model', 'application', 'return_keras_model'],
    'backend.sequence_masking': ['x', 'mask', 'value', 'axis'],
    'backend.batch_gather': ['params', 'indices'],
    'backend.search_layer': ['inputs', 'name', 'exclude_from'],
    'backend.piecewise_linear': ['t', 'schedule'],
    'backend.sinusoidal_embeddings': ['pos', 'dim', 'base'],
    'backend.multilabel_categorical_crossentropy': ['y_true', 'y_pred'],
    'snippets.sequence_padding': ['inputs', 'length', 'value', 'seq_dims', 'mode'],
    'snippets.text_segmentate': ['text', 'maxlen', 'seps', 'strips'],
    'snippets.open': ['name', 'mode', 'encoding', 'errors', 'indexable'],
    'tokenizers.load_vocab': ['dict_path', 'encoding', 'simplified', 'startswith'],
    'tokenizers.truncate_sequences': ['maxlen', 'indices'],
    'optimizers.extend_with_weight_decay': ['BaseOptimizer'],
    'optimizers.extend_with_piecewise_linear_lr_v2': ['BaseOptimizer'],
}


def test_the_list_matches_the_shared_file():
    if not os.path.exists(NAMES_FILE):
        pytest.skip('shared/bert4keras_public_names.json is not next to the repository')
    with open(NAMES_FILE, encoding='utf-8') as f:
        data = json.load(f)
    assert set(data['own']) | set(data['examples']) <= set(NAMES) | {'backend.K', 'backend.keras'}


@pytest.mark.parametrize('qualified', NAMES)
def test_name_imports_from_the_bert4keras_path(qualified):
    module_name, name = qualified.split('.')
    module = importlib.import_module('bert4keras_ext.' + module_name)
    assert getattr(module, name) is not None


@pytest.mark.parametrize('qualified, parameters', sorted(SIGNATURES.items()))
def test_bert4keras_argument_names_are_accepted(qualified, parameters):
    module_name, name = qualified.split('.')
    function = getattr(importlib.import_module('bert4keras_ext.' + module_name), name)
    accepted = inspect.signature(function).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    for parameter in parameters:
        assert parameter in accepted or takes_kwargs, '%s does not take %r' % (qualified, parameter)
