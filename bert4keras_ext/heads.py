"""Task heads with bert4keras names: CRF, (Bi-)MEMM, GlobalPointer, Efficient GlobalPointer, AM-Softmax.

All are Keras 3 layers registered for `.keras` serialization with complete `get_config`.
They live in `bert4keras_ext/nn/` (re-exported here): `crf` (CRF, MEMM; their shared base in
`sequence_head`), `global_pointer` (GlobalPointer, EfficientGlobalPointer), `am_softmax`.

Masking. A head takes its padding mask either as the Keras mask of its input or explicitly, as a
second input `[x, mask]` with `mask` (b, n) bool/0-1 — or simply the token ids, whose non-zero
entries are the real tokens (`crf([emissions, token_ids])`) — so the heads work on any backbone. Masked scores are set to a large finite negative
(`backend.mask_value('float32')` = -1e12), never -inf, so no NaN appears downstream.

Precision. The scores these heads emit feed log-space computations (forward algorithm, logsumexp
losses), so their outputs are float32 even under a `mixed_float16` / `mixed_bfloat16` policy; CRF and
MEMM also read their transition matrices in float32.

Sequence heads (CRF, MEMM) follow bert4keras ≥ 0.10: the layer's output is its input with padded
steps filled with the mask value, and the losses/metrics recover the mask from that fill. Masks must
be right-padded (a prefix of real steps per row), as produced by the tokenizer and `sequence_padding`.
"""
from bert4keras_ext.multilabel import check_labels_in_range
from bert4keras_ext.nn.am_softmax import AMSoftmaxDense
from bert4keras_ext.nn.common import register  # noqa: F401  (the registry decorator)
from bert4keras_ext.nn.crf import ConditionalRandomField, MaximumEntropyMarkovModel
from bert4keras_ext.nn.global_pointer import EfficientGlobalPointer, GlobalPointer, apply_rotary_position_embeddings

__all__ = [
    'ConditionalRandomField', 'MaximumEntropyMarkovModel', 'GlobalPointer', 'EfficientGlobalPointer',
    'AMSoftmaxDense', 'apply_rotary_position_embeddings', 'check_labels_in_range',
]
