"""Applications: the attention masks of language modelling ('lm') and seq2seq ('unilm'), as mixins."""
from bert4keras_ext.layers import AttentionMask

__all__ = ['LM_Mask', 'UniLM_Mask']


class LM_Mask:
    """Mixin: causal (lower-triangular) attention for unidirectional language modelling."""

    def make_attention_bias(self, token_ids, segment_ids):
        return self.apply(token_ids, AttentionMask, mode='lm', name='Attention-LM-Mask')


class UniLM_Mask:
    """Mixin: UniLM seq2seq attention — segment 0 (source) bidirectional, segment 1 (target) causal."""

    def make_attention_bias(self, token_ids, segment_ids):
        if segment_ids is None:
            raise ValueError("application='unilm' needs segment ids (segment_vocab_size > 0)")
        return self.apply([token_ids, segment_ids], AttentionMask, mode='unilm', name='Attention-UniLM-Mask')
