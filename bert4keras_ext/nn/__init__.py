"""The package's core Keras layers, by role (`bert4keras_ext.layers` is the bert4keras import path that
re-exports them): `embeddings` (token / position embeddings, the MLM bias), `attention` (multi-head attention
with its decoding cache, the attention masks), `feed_forward` (dense blocks), `normalization` (layer norm,
conditional), `basic` (mask-keeping Add, ExtractToken, the Loss layer). The task heads, re-exported by
`bert4keras_ext.heads`: `crf` (CRF, MEMM; their shared base in `sequence_head`), `global_pointer` (GlobalPointer,
EfficientGlobalPointer), `am_softmax` (AMSoftmaxDense), `head_common` (the fill value, the `[x, mask]` input)."""
