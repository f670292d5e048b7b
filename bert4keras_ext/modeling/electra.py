"""ELECTRA (arxiv.org/abs/2003.10555) discriminators in Google's TF1 layout, e.g. HFL's Chinese ELECTRA.

The discriminator is a BERT encoder whose variables live under ``electra/`` (embeddings, encoder) with
``electra/embeddings_project`` mapping `embedding_size`-wide embeddings to `hidden_size` when they differ
(ELECTRA-small: 128 → 256), no pooler and no MLM/NSP heads; its pretraining head is replaced-token
detection, ``discriminator_predictions/dense`` (hidden → hidden, `hidden_act`) then
``discriminator_predictions/dense_1`` (hidden → 1) (`formats.google` family 'electra'). A released
checkpoint also holds the generator (``generator/...``, ``generator_predictions/...``), which is not built.

`hidden_act: "gelu"` is the exact erf GELU here, as in bert4keras and Hugging Face (Google's ELECTRA code used
the tanh form, ~1e-3 apart); pass hidden_act='gelu_tanh' to follow it.
"""
from bert4keras_ext.backend import get_activation, keras
from bert4keras_ext.modeling.bert import BERT

__all__ = ['ELECTRA']


class ELECTRA(BERT):
    """The ELECTRA discriminator (bert4keras' `ELECTRA`): BERT's encoder, optional replaced-token detection.

    Args (besides BERT's; with_pool, with_nsp and with_mlm do not exist for ELECTRA, as in bert4keras):
        with_discriminator: True → per-token probability that the token was replaced, (b, n, 1) (sigmoid);
            'linear' → its logits; another activation name → that activation. False (default) → the
            sequence output (b, n, hidden).
    """

    checkpoint_family = 'electra'

    def __init__(self, max_position, with_discriminator=False, **kwargs):
        given = [name for name in ('with_pool', 'with_nsp', 'with_mlm') if kwargs.get(name)]
        if given:
            raise ValueError(
                'ELECTRA has no pooler, NSP or MLM head (the discriminator predicts replaced tokens: '
                'with_discriminator=True), so %s cannot be used. application=\'lm\'/\'unilm\' turn the MLM head '
                'on by default: pass with_mlm=False for an ELECTRA encoder with that attention mask.'
                % ', '.join('%s=%r' % (name, kwargs[name]) for name in given))
        super().__init__(max_position, **kwargs)
        self.with_discriminator = with_discriminator

    def apply_final_layers(self, inputs):
        x = inputs
        if not self.with_discriminator:
            return x
        activation = 'sigmoid' if self.with_discriminator is True else self.with_discriminator
        x = self.apply(x, keras.layers.Dense, units=self.hidden_size, activation=get_activation(self.hidden_act),
                       kernel_initializer=self.initializer, name='Discriminator-Dense')
        # float32 probabilities/logits even under a mixed-precision policy
        return self.apply(x, keras.layers.Dense, units=1, activation=activation, dtype='float32',
                          kernel_initializer=self.initializer, name='Discriminator-Prediction')

    def variable_mapping(self):
        return self._table_mapping('electra')
