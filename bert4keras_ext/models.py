"""Transformer models as plain Keras functional graphs, loadable from Google-format checkpoints.

`build_transformer_model(config_path, checkpoint_path, model='bert', application='encoder', ...)` is the
entry point, as in bert4keras. A model is a `Transformer` subclass whose forward pass is a short list of
overridable steps::

    get_inputs → apply_embeddings → apply_main_layers(x, i) for each layer → apply_final_layers
    compute_attention_bias (padding / LM / UniLM masks, built once and shared by all layers)

and whose `variable_mapping()` returns {keras layer name: [checkpoint variable names]} in the order of
the layer's weights. Competition code overrides one step (or passes `model=MyBERT`) and checkpoint
loading keeps working.
"""
from bert4keras_ext.checkpoints import CheckpointError, load_config
from bert4keras_ext.hf_checkpoints import (
    check_hf_model, hf_config_path, hf_model_name, is_hf_checkpoint, load_hf_config, load_hf_weights,
)
from bert4keras_ext.layers import (  # noqa: F401  (bert4keras' models module exposes these)
    Embedding, FeedForward, LayerNormalization, MultiHeadAttention, PositionEmbedding,
)
from bert4keras_ext.modeling.applications import LM_Mask, UniLM_Mask
from bert4keras_ext.modeling.bert import ALBERT, ALBERT_Unshared, BERT
from bert4keras_ext.modeling.electra import ELECTRA
from bert4keras_ext.modeling.nezha import NEZHA
from bert4keras_ext.modeling.roformer import RoFormer, RoFormerV2
from bert4keras_ext.modeling.transformer import Transformer

__all__ = ['Transformer', 'BERT', 'build_transformer_model', 'MODELS', 'APPLICATIONS',
           'extend_with_language_model', 'extend_with_unified_language_model']


MODELS = {
    'bert': BERT,
    'roberta': BERT,
    'wobert': BERT,
    'albert': ALBERT,
    'albert_unshared': ALBERT_Unshared,
    'nezha': NEZHA,
    'electra': ELECTRA,
    'roformer': RoFormer,
    'roformer_v2': RoFormerV2,
}
APPLICATIONS = {
    'encoder': None,
    'lm': LM_Mask,
    'unilm': UniLM_Mask,
}

# bert_config.json key → constructor argument
_CONFIG_ALIASES = {
    'max_position_embeddings': 'max_position',
    'hidden_dropout_prob': 'dropout_rate',
    'attention_probs_dropout_prob': 'attention_dropout_rate',
    'type_vocab_size': 'segment_vocab_size',
}
_REQUIRED_CONFIG = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
                    'max_position')


# bert4keras' way of adding an application to a model class (build_transformer_model's `application=`
# does the same with the mixins above)
def _model_class(BaseModel):
    """`BaseModel` as a Transformer subclass (a model name such as 'bert' is accepted too)."""
    if isinstance(BaseModel, str):
        if BaseModel.lower() not in MODELS:
            raise ValueError('unknown model %r; expected one of %s or a Transformer subclass'
                             % (BaseModel, sorted(MODELS)))
        return MODELS[BaseModel.lower()]
    if not (isinstance(BaseModel, type) and issubclass(BaseModel, Transformer)):
        raise TypeError('BaseModel must be a Transformer subclass (e.g. bert4keras_ext.models.BERT), got %r'
                        % (BaseModel,))
    return BaseModel


def _with_mask(BaseModel, mask_name, class_name, doc):
    base = _model_class(BaseModel)
    mixin = {'LM_Mask': LM_Mask, 'UniLM_Mask': UniLM_Mask}[mask_name]

    class Extended(mixin, base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # a language model predicts tokens: the MLM head is on unless the caller chose one
            self.with_mlm = getattr(self, 'with_mlm', False) or True

    Extended.__name__ = Extended.__qualname__ = class_name
    Extended.__doc__ = doc
    return Extended


def extend_with_language_model(BaseModel):
    """A subclass of `BaseModel` (a Transformer class, e.g. `BERT`) with a lower-triangular attention mask
    (unidirectional language model) and ``with_mlm=True`` unless given; pass it as
    ``build_transformer_model(..., model=extend_with_language_model(BERT))``."""
    return _with_mask(BaseModel, 'LM_Mask', 'LanguageModel',
                      'Transformer with a causal attention mask (language model).')


def extend_with_unified_language_model(BaseModel):
    """A subclass of `BaseModel` with the UniLM seq2seq attention mask (segment 0 bidirectional, segment 1
    causal; arxiv.org/abs/1905.03197) and ``with_mlm=True`` unless given."""
    return _with_mask(BaseModel, 'UniLM_Mask', 'UnifiedLanguageModel',
                      'Transformer with the UniLM attention mask (seq2seq).')


# bert4keras passes these to Transformer.build(), not to the constructor
_BUILD_ARGUMENTS = ('attention_caches', 'layer_norm_cond', 'layer_norm_cond_hidden_size',
                    'layer_norm_cond_hidden_act', 'additional_input_layers')


def _resolve_model_class(model, application):
    if isinstance(model, str):
        key = model.lower()
        if key not in MODELS:
            raise ValueError('unknown model=%r; expected one of %s, or a Transformer subclass'
                             % (model, sorted(MODELS)))
        model_class = MODELS[key]
    elif isinstance(model, type) and issubclass(model, Transformer):
        model_class = model
    else:
        raise TypeError('model must be a name (%s) or a Transformer subclass, got %r' % (sorted(MODELS), model))
    if isinstance(application, str):
        if application.lower() not in APPLICATIONS:
            raise ValueError('unknown application=%r; expected one of %s' % (application, sorted(APPLICATIONS)))
        mixin = APPLICATIONS[application.lower()]
    elif isinstance(application, type):
        mixin = application
    else:
        raise TypeError('application must be one of %s or a mixin class, got %r' % (sorted(APPLICATIONS), application))
    if mixin is not None:
        model_class = type('%s_%s' % (mixin.__name__, model_class.__name__), (mixin, model_class), {})
    return model_class


def build_transformer_model(config_path=None, checkpoint_path=None, model=None, application='encoder',
                            return_keras_model=True, **kwargs):
    """Build a Transformer from a Google `bert_config.json`, optionally loading a checkpoint.

    Args:
        config_path: path of the JSON config (or None and give every size in kwargs), or a Hugging Face
            model directory (config.json + model.safetensors).
        checkpoint_path: checkpoint prefix / file / directory, or a Hugging Face model directory /
            .safetensors file (`hf_checkpoints`); None leaves random weights.
        model: 'bert', 'roberta', 'wobert' (all the BERT layout), another name of `MODELS` or a Transformer
            subclass. Default: the family of a Hugging Face config.json's model_type ('bert', 'albert',
            'roformer', 'nezha', 'electra'), else 'bert'.
        application: 'encoder'; 'lm' (causal mask) or 'unilm' (seq2seq mask), which also turn on the
            MLM head (`with_mlm=True` unless given).
        return_keras_model: True → the keras.Model; False → the Transformer (`.model`, `.initializer`,
            `.layers`, `.save_weights_as_checkpoint`).
        **kwargs: override config entries and pass model options: with_pool, with_nsp, with_mlm,
            keep_tokens, compound_tokens, sequence_length, hierarchical_position, attention_scale,
            residual_attention_scores, dropout_rate, name, prefix, ...; and bert4keras' build arguments
            layer_norm_cond, layer_norm_cond_hidden_size, layer_norm_cond_hidden_act,
            additional_input_layers (Conditional Layer Normalization, see `Transformer.build`).
    """
    configs = {}
    hf_config = hf_config_path(config_path, checkpoint_path)  # a Hugging Face model directory's config.json
    if hf_config is not None:
        configs.update(load_hf_config(hf_config))
        if model is None:
            model = hf_model_name(hf_config)
    elif config_path is not None:
        configs.update(load_config(config_path))
    explicit_layers = 'num_hidden_layers' in kwargs
    configs.update(kwargs)
    for key, alias in _CONFIG_ALIASES.items():
        if key in configs and alias not in kwargs:
            configs[alias] = configs.pop(key)
        else:
            configs.pop(key, None)
    configs.setdefault('segment_vocab_size', 2)
    missing = [k for k in _REQUIRED_CONFIG if configs.get(k) is None]
    if missing:
        names = {v: k for k, v in _CONFIG_ALIASES.items()}
        raise CheckpointError('the model config lacks %s (from %s); a bert_config.json needs vocab_size, '
                              'hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and '
                              'max_position_embeddings' % (', '.join(names.get(k, k) for k in missing),
                                                           config_path or 'kwargs'))
    if application in ('lm', 'unilm'):
        configs.setdefault('with_mlm', True)
    if 'strict_layer_count' not in configs:
        configs['strict_layer_count'] = not explicit_layers
    build_arguments = {k: configs.pop(k) for k in _BUILD_ARGUMENTS if k in configs}
    model_class = _resolve_model_class('bert' if model is None else model, application)
    if hf_config is not None:
        check_hf_model(hf_config, model_class, model)
    transformer = model_class(**_known_arguments(model_class, configs))
    transformer.build(**build_arguments)
    if checkpoint_path is not None:
        if is_hf_checkpoint(checkpoint_path):
            load_hf_weights(transformer, checkpoint_path)
        else:
            transformer.load_weights_from_checkpoint(checkpoint_path)
    return transformer.model if return_keras_model else transformer


def _known_arguments(model_class, configs):
    """Drop config entries that no constructor in the class hierarchy takes (e.g. initializer_range),
    but fail loudly on misspelled *option* names passed by the caller."""
    import inspect
    accepted = set()
    for cls in model_class.__mro__:
        if '__init__' in cls.__dict__:
            accepted.update(inspect.signature(cls.__dict__['__init__']).parameters)
    known_config_only = {'initializer_range', 'hidden_act', 'directionality', 'pooler_fc_size', 'pooler_num_attention_heads',
                         'pooler_num_fc_layers', 'pooler_size_per_head', 'pooler_type', 'layer_norm_eps',
                         'model_type', 'architectures', 'output_past', 'net_structure_type', 'num_hidden_groups',
                         'inner_group_num', 'gap_size', 'num_memory_blocks', 'down_scale_factor', 'ln_type',
                         'classifier_dropout', 'use_cache', 'position_embedding_type', 'pad_token_id',
                         'torch_dtype', 'transformers_version', 'bos_token_id', 'eos_token_id', 'gradient_checkpointing',
                         # RoFormer / RoFormer-v2 release configs (Zhuiyi bert_config.json, junnyu's config.json)
                         'rotary_value', 'norm_type', 'use_bias',
                         # NEZHA (Huawei bert_config.json; NEZHA takes them, other models ignore them so that a
                         # NEZHA checkpoint built as BERT gets the checkpoint hint) and HFL ELECTRA configs
                         'use_relative_position', 'max_relative_position', 'summary_type', 'summary_use_proj',
                         'summary_activation', 'summary_last_dropout', '_num_labels'}
    unknown = [k for k in configs if k not in accepted and k not in known_config_only]
    if unknown:
        raise TypeError('build_transformer_model: unknown option(s) %s for %s' % (sorted(unknown), model_class.__name__))
    return {k: v for k, v in configs.items() if k in accepted}


# bert4keras' models module re-exports its layers and backend helpers (``from bert4keras.layers import *``)
# and a few snippets utilities; scripts import them from here, so they are re-exported the same way.
from bert4keras_ext.layers import (  # noqa: E402,F401
    BatchConcat, BatchSplit, Concatenate1D, ConditionalRandomField, EfficientGlobalPointer, GlobalAveragePooling1D,
    GlobalMaxPooling1D, GlobalPointer, Layer, Loss, MaximumEntropyMarkovModel, RelativePositionEmbedding,
    ScaleOffset, SinusoidalPositionEmbedding, align, apply_rotary_position_embeddings, attention_normalize,
    integerize_shape, recompute_grad, sequence_masking, sinusoidal_embeddings,
)
from bert4keras_ext.models_compat import (  # noqa: E402,F401
    data_parallel, delete_arguments, get_available_gpus, insert_arguments, is_string, orthogonally_resize,
    string_matching,
)

__all__ += ['ALBERT', 'ALBERT_Unshared', 'NEZHA', 'ELECTRA', 'RoFormer', 'RoFormerV2', 'LM_Mask', 'UniLM_Mask', 'Embedding', 'FeedForward', 'LayerNormalization',
            'MultiHeadAttention', 'PositionEmbedding', 'BatchConcat', 'BatchSplit', 'Concatenate1D',
            'ConditionalRandomField', 'EfficientGlobalPointer', 'GlobalAveragePooling1D', 'GlobalMaxPooling1D',
            'GlobalPointer', 'Layer', 'Loss', 'MaximumEntropyMarkovModel', 'RelativePositionEmbedding', 'ScaleOffset',
            'SinusoidalPositionEmbedding', 'align', 'apply_rotary_position_embeddings', 'attention_normalize',
            'integerize_shape', 'recompute_grad', 'sequence_masking', 'sinusoidal_embeddings', 'data_parallel',
            'delete_arguments',
            'get_available_gpus', 'insert_arguments', 'is_string', 'orthogonally_resize', 'string_matching']
