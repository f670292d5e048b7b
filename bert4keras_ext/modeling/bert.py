"""BERT (also RoBERTa-wwm and WoBERT: the same layout), ALBERT and ALBERT_Unshared in Google's TF1 layout."""
from bert4keras_ext.backend import get_activation, keras
from bert4keras_ext.checkpoints import CheckpointReader
from bert4keras_ext.formats import TRANSPOSED, encoder_layer_indices, variable_mapping as table_variable_mapping
from bert4keras_ext.layers import (
    Add, AttentionMask, BiasAdd, Embedding, ExtractToken, FeedForward, MultiHeadAttention, PositionEmbedding,
)
from bert4keras_ext.modeling.transformer import Transformer

__all__ = ['BERT', 'ALBERT', 'ALBERT_Unshared']


class BERT(Transformer):
    """BERT (and RoBERTa-wwm / WoBERT, which share its checkpoint layout): post-LN encoder.

    Inputs `[token_ids (b, n), segment_ids (b, n)]`, id 0 = padding (masked automatically).
    Outputs follow bert4keras: the sequence output (b, n, hidden) alone; with `with_pool` the pooled
    [CLS] vector (b, hidden) (or NSP probabilities (b, 2) with `with_nsp`); with `with_mlm` token
    probabilities (b, n, vocab) ('linear' → logits); several heads → a list [seq?, pool, mlm] as in
    bert4keras (sequence output is dropped when a head is requested, exactly like bert4keras).
    """

    def __init__(self, max_position, segment_vocab_size=2, with_pool=False, with_nsp=False, with_mlm=False,
                 hierarchical_position=None, custom_position_ids=False, shared_segment_embeddings=False,
                 layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.max_position = max_position
        self.segment_vocab_size = segment_vocab_size
        self.with_pool = with_pool
        self.with_nsp = with_nsp
        self.with_mlm = with_mlm
        self.hierarchical_position = hierarchical_position
        self.custom_position_ids = custom_position_ids
        self.shared_segment_embeddings = shared_segment_embeddings
        self.layer_norm_epsilon = layer_norm_epsilon
        if self.with_nsp and not self.with_pool:
            self.with_pool = True

    def get_inputs(self):
        token_ids = self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                               name='Input-Token')
        inputs = [token_ids]
        if self.segment_vocab_size > 0:
            segment_ids = self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                                     name='Input-Segment')
            inputs.append(segment_ids)
        if self.custom_position_ids:
            inputs.append(self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                                     name='Input-Position'))
        return inputs

    def apply_embeddings(self, inputs):
        """Token (+ segment) → position → norm → dropout (→ `Embedding-Mapping` when factorised)."""
        inputs = list(inputs)
        x = self.apply_token_segment_embeddings(inputs)
        x = self.apply_position_embeddings(x, inputs)
        x = self.apply_norm(x, 'Embedding-Norm')
        x = self.apply(x, keras.layers.Dropout, rate=self.dropout_rate, name='Embedding-Dropout')
        return self.apply_embedding_mapping(x)

    def apply_token_segment_embeddings(self, inputs):
        """Token (+ segment) embeddings; takes the token and segment ids off the front of the list `inputs`
        and makes the attention mask from them."""
        token_ids = inputs.pop(0)
        segment_ids = inputs.pop(0) if self.segment_vocab_size > 0 else None
        self.attention_bias = self.make_attention_bias(token_ids, segment_ids)
        x = self.apply(token_ids, Embedding, input_dim=self.vocab_size, output_dim=self.embedding_size,
                       embeddings_initializer=self.initializer, mask_zero=True, name='Embedding-Token')
        if segment_ids is not None:
            if self.shared_segment_embeddings:
                s = self.apply(segment_ids, Embedding, name='Embedding-Token')
            else:
                s = self.apply(segment_ids, Embedding, input_dim=self.segment_vocab_size,
                               output_dim=self.embedding_size, embeddings_initializer=self.initializer,
                               name='Embedding-Segment')
            x = self.apply([x, s], Add, name='Embedding-Token-Segment')
        return x

    def apply_position_embeddings(self, x, inputs):
        """The absolute position table (`custom_position_ids`: the position ids come next in `inputs`);
        families with relative or rotary positions return `x` unchanged."""
        position_ids = inputs.pop(0) if self.custom_position_ids else None
        return self.apply([x, position_ids] if self.custom_position_ids else x, PositionEmbedding,
                          input_dim=self.max_position, output_dim=self.embedding_size, merge_mode='add',
                          hierarchical=self.hierarchical_position, embeddings_initializer=self.initializer,
                          custom_position_ids=self.custom_position_ids, name='Embedding-Position')

    def apply_embedding_mapping(self, x):
        if self.embedding_size != self.hidden_size:
            x = self.apply(x, keras.layers.Dense, units=self.hidden_size, use_bias=self.use_bias,
                           kernel_initializer=self.initializer, name='Embedding-Mapping')
        return x

    def apply_norm(self, x, name):
        """The normalisation after the embeddings and each residual sum (LayerNormalization, conditional when
        the model is built with `layer_norm_cond`); RoFormer-v2 uses a weightless one."""
        return self.apply_layer_norm(x, name)

    def make_attention_bias(self, token_ids, segment_ids):
        """Padding mask (b, 1, 1, n) from token ids; applications (LM / UniLM) override this."""
        return self.apply(token_ids, AttentionMask, mode='padding', name='Attention-Mask')

    def attention_layer_name(self, index):
        return 'Transformer-%d-MultiHeadSelfAttention' % index

    def feed_forward_layer_name(self, index):
        return 'Transformer-%d-FeedForward' % index

    # The block's attention: its layer class, its inputs and its options (families override these).
    attention_class = MultiHeadAttention
    use_bias = True  # biases in the dense layers (RoFormer-v2 has none)

    def attention_inputs(self, x, index):
        """[q, k, v, attention mask?, previous layer's scores (RealFormer)?] for block `index`."""
        inputs = [x, x, x]
        bias = self.compute_attention_bias(index)
        if bias is not None:
            inputs.append(bias)
        if self.residual_attention_scores and index > 0 and self._previous_scores is not None:
            inputs.append(self._previous_scores)
        return inputs

    def attention_options(self):
        options = dict(heads=self.num_attention_heads, head_size=self.attention_head_size, out_dim=self.hidden_size,
                       key_size=self.attention_key_size, attention_dropout=self.attention_dropout_rate,
                       return_attention_scores=bool(self.residual_attention_scores),
                       normalization=self.attention_normalization, scale_base=self.attention_scale_base,
                       kernel_initializer=self.initializer, recompute=self.recompute)
        if not self.use_bias:
            options['use_bias'] = False
        return options

    def feed_forward_options(self):
        options = dict(units=self.intermediate_size, activation=self.hidden_act, kernel_initializer=self.initializer,
                       recompute=self.recompute)
        if not self.use_bias:
            options['use_bias'] = False
        return options

    def apply_main_layers(self, inputs, index):
        """One post-LN block: x = Norm(x + Attn(x)); x = Norm(x + FFN(x))."""
        x = inputs
        attention_name = self.attention_layer_name(index)
        feed_forward_name = self.feed_forward_layer_name(index)
        y = self.apply(self.attention_inputs(x, index), self.attention_class, name=attention_name,
                       **self.attention_options())
        if self.residual_attention_scores:
            y, self._previous_scores = y
        y = self.apply(y, keras.layers.Dropout, rate=self.dropout_rate, name='%s-Dropout' % attention_name)
        x = self.apply([x, y], Add, name='%s-Add' % attention_name)
        x = self.apply_norm(x, '%s-Norm' % attention_name)

        y = self.apply(x, FeedForward, name=feed_forward_name, **self.feed_forward_options())
        y = self.apply(y, keras.layers.Dropout, rate=self.dropout_rate, name='%s-Dropout' % feed_forward_name)
        x = self.apply([x, y], Add, name='%s-Add' % feed_forward_name)
        return self.apply_norm(x, '%s-Norm' % feed_forward_name)

    def apply_final_layers(self, inputs):
        x = inputs
        outputs = [x]
        if self.with_pool:
            pool_activation = 'tanh' if self.with_pool is True else self.with_pool
            y = self.apply(x, ExtractToken, index=0, name='Pooler')
            y = self.apply(y, keras.layers.Dense, units=self.hidden_size, activation=pool_activation,
                           kernel_initializer=self.initializer, name='Pooler-Dense')
            if self.with_nsp:
                nsp_activation = 'softmax' if self.with_nsp is True else self.with_nsp
                y = self.apply(y, keras.layers.Dense, units=2, activation=nsp_activation,
                               kernel_initializer=self.initializer, name='NSP-Proba')
            outputs.append(y)
        if self.with_mlm:
            mlm_activation = 'softmax' if self.with_mlm is True else self.with_mlm
            y = self.apply(x, keras.layers.Dense, units=self.embedding_size,
                           activation=get_activation(self.hidden_act), kernel_initializer=self.initializer,
                           name='MLM-Dense')
            y = self.apply_layer_norm(y, 'MLM-Norm')
            y = self.apply(y, Embedding, arguments={'mode': 'dense'}, name='Embedding-Token')
            y = self.apply(y, BiasAdd, name='MLM-Bias')
            # float32 probabilities/logits even under a mixed-precision policy
            y = self.apply(y, keras.layers.Activation, activation=mlm_activation, dtype='float32',
                           name='MLM-Activation')
            outputs.append(y)
        if len(outputs) == 1:
            return outputs[0]
        if len(outputs) == 2:
            return outputs[1]
        return outputs[1:]

    def load_variable(self, reader, name):
        variable = super().load_variable(reader, name)
        if name in TRANSPOSED:
            return variable.T  # Google stores NSP's (2, hidden); Dense wants (hidden, 2)
        return variable

    def create_variable(self, name, value):
        if name in TRANSPOSED:
            return value.T
        return value

    def variable_mapping(self):
        return self._table_mapping('bert')

    def _table_mapping(self, family):
        """The `formats.google` table of `family` for this model: its size and its block layer names."""
        return table_variable_mapping(family, self.num_hidden_layers, self.attention_layer_name,
                                      self.feed_forward_layer_name)


class ALBERT(BERT):
    """ALBERT in Google's release format: factorised embedding + one transformer block shared by all layers.

    Embeddings are `embedding_size` wide and mapped to `hidden_size` by `Embedding-Mapping`; every layer
    calls the same `Transformer-MultiHeadSelfAttention` / `Transformer-FeedForward` layers, whose weights
    are the shared block of the checkpoint (`formats.google.ALBERT_BLOCK`). The MLM head works in
    `embedding_size`.

    Google's ALBERT code uses the tanh approximation of GELU, so a config's 'gelu' means 'gelu_tanh'
    here (BERT keeps the exact erf form); pass hidden_act='gelu_erf' to override.
    """

    checkpoint_family = 'albert'

    def __init__(self, hidden_act='gelu', **kwargs):
        if isinstance(hidden_act, str) and hidden_act.lower() == 'gelu':
            hidden_act = 'gelu_tanh'
        super().__init__(hidden_act=hidden_act, **kwargs)

    def attention_layer_name(self, index):
        return 'Transformer-MultiHeadSelfAttention'

    def feed_forward_layer_name(self, index):
        return 'Transformer-FeedForward'

    def variable_mapping(self):
        return self._table_mapping('albert')

    def _unexpected_layers(self, reader, mapping):
        return []  # one shared block: the layer count is not stored in the checkpoint


class ALBERT_Unshared(ALBERT):
    """ALBERT with the shared block copied into every layer, so fine-tuning can specialise each layer.

    Built like BERT (`Transformer-{i}-...` layers, each with its own weights); every layer starts from
    the checkpoint's single shared block, so outputs equal `ALBERT`'s before training. Saving writes the
    per-layer layout (the 'bert' table of `formats.google`, which has ALBERT's embedding mapping too),
    since the layers differ after fine-tuning; loading accepts either layout.
    """

    def attention_layer_name(self, index):
        return BERT.attention_layer_name(self, index)

    def feed_forward_layer_name(self, index):
        return BERT.feed_forward_layer_name(self, index)

    def variable_mapping(self, layout='shared'):
        """layout: 'shared' (every layer reads ALBERT's one block) or 'per_layer' (BERT's per-layer names)."""
        if layout not in ('shared', 'per_layer'):
            raise ValueError("layout must be 'shared' or 'per_layer', got %r" % (layout,))
        return self._table_mapping('albert' if layout == 'shared' else 'bert')

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
        if mapping is None:
            per_layer = bool(encoder_layer_indices(reader.names))
            mapping = self.variable_mapping('per_layer' if per_layer else 'shared')
        return super().load_weights_from_checkpoint(reader, mapping)

    def save_weights_as_checkpoint(self, filename, mapping=None, dtype=None):
        return super().save_weights_as_checkpoint(filename, mapping or self.variable_mapping('per_layer'), dtype)

    def _unexpected_layers(self, reader, mapping):
        return BERT._unexpected_layers(self, reader, mapping)
