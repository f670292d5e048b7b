"""An independent numpy forward pass of Google BERT / ALBERT, read from the raw checkpoint arrays.

Written from the papers and Google's modeling.py semantics, not from the package: the tests compare
the Keras models against it. float64 throughout.

Options mirror the package's model options so each can be checked with "the same change":
ALBERT's shared block and factorised embedding, erf/tanh GELU, entropy-invariant (log-n) attention
scaling, RealFormer residual scores (paper version: cumulative pre-softmax scores), hierarchical
position embeddings, extra boolean attention masks (LM / UniLM), and a key-size override.
"""
import math

import numpy as np
import tensorflow as tf

_erf = np.vectorize(math.erf)

ALBERT_BLOCK = 'bert/encoder/transformer/group_0/inner_group_0/'


def read_arrays(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n).astype('float64') for n in reader.get_variable_to_shape_map()}


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu_erf(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def hierarchical_positions(table, n, alpha=0.4):
    """Rows 0..n-1 of the hierarchical decomposition (kexue.fm/archives/7947), 1-based formula
    q[(i-1)·m + j] = alpha·u_i + (1-alpha)·u_j with u = (p - alpha·p_1)/(1 - alpha), written 0-based."""
    m = table.shape[0]
    u = (table - alpha * table[0]) / (1 - alpha)
    rows = []
    for p in range(n):
        i, j = divmod(p, m)
        rows.append(alpha * u[i] + (1 - alpha) * u[j])
    return np.stack(rows)


def block_names(family, index):
    if family == 'albert':
        p = ALBERT_BLOCK
        return dict(q=p + 'attention_1/self/query', k=p + 'attention_1/self/key', v=p + 'attention_1/self/value',
                    o=p + 'attention_1/output/dense', ln1=p + 'LayerNorm', inner=p + 'ffn_1/intermediate/dense',
                    outer=p + 'ffn_1/intermediate/output/dense', ln2=p + 'LayerNorm_1')
    p = 'bert/encoder/layer_%d/' % index
    return dict(q=p + 'attention/self/query', k=p + 'attention/self/key', v=p + 'attention/self/value',
                o=p + 'attention/output/dense', ln1=p + 'attention/output/LayerNorm', inner=p + 'intermediate/dense',
                outer=p + 'output/dense', ln2=p + 'output/LayerNorm')


def forward(W, token_ids, segment_ids, num_layers, heads, family='bert', gelu=None, attention_scale=None,
            scale_base=512, residual=False, hierarchical=None, extra_mask=None, key_size=None):
    """Returns dict(sequence, pooled, nsp, mlm_logits) for one padded batch.

    extra_mask: bool (b, n, n) AND-ed with the padding mask (True = may attend), e.g. LM / UniLM.
    """
    gelu = gelu or (gelu_tanh if family == 'albert' else gelu_erf)
    b, n = token_ids.shape
    x = W['bert/embeddings/word_embeddings'][token_ids]
    x = x + W['bert/embeddings/token_type_embeddings'][segment_ids]
    table = W['bert/embeddings/position_embeddings']
    if hierarchical:
        alpha = 0.4 if hierarchical is True else hierarchical
        positions = hierarchical_positions(table, n, alpha)
    else:
        positions = table[:n]
    x = x + positions[None]
    x = layer_norm(x, W['bert/embeddings/LayerNorm/gamma'], W['bert/embeddings/LayerNorm/beta'])
    if 'bert/encoder/embedding_hidden_mapping_in/kernel' in W:
        x = x @ W['bert/encoder/embedding_hidden_mapping_in/kernel'] + W['bert/encoder/embedding_hidden_mapping_in/bias']
    H = x.shape[-1]
    allowed = np.broadcast_to((token_ids != 0)[:, None, None, :], (b, 1, n, n))
    if extra_mask is not None:
        allowed = allowed & extra_mask[:, None]
    previous = None
    for i in range(num_layers):
        names = block_names(family, i)

        def dense(t, name):
            return t @ W[name + '/kernel'] + W[name + '/bias']

        q, k, v = dense(x, names['q']), dense(x, names['k']), dense(x, names['v'])
        dk = q.shape[-1] // heads
        dv = v.shape[-1] // heads
        q, k, v = q.reshape(b, n, heads, dk), k.reshape(b, n, heads, dk), v.reshape(b, n, heads, dv)
        scores = np.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(dk)
        if residual and previous is not None:
            scores = scores + previous
        previous = scores
        logits = scores
        if attention_scale == 'log_n':
            visible = np.broadcast_to(allowed, scores.shape).sum(-1, keepdims=True)
            logits = logits * np.log(np.maximum(visible, 16)) / math.log(scale_base)
        logits = np.where(allowed, logits, -1e30)
        probs = softmax(logits)
        context = np.einsum('bhqk,bkhd->bqhd', probs, v).reshape(b, n, heads * dv)
        x = layer_norm(x + dense(context, names['o']), W[names['ln1'] + '/gamma'], W[names['ln1'] + '/beta'])
        ffn = dense(gelu(dense(x, names['inner'])), names['outer'])
        x = layer_norm(x + ffn, W[names['ln2'] + '/gamma'], W[names['ln2'] + '/beta'])
    if 'bert/pooler/dense/kernel' not in W:  # a checkpoint saved from an encoder-only model
        return dict(sequence=x)
    pooled = np.tanh(x[:, 0] @ W['bert/pooler/dense/kernel'] + W['bert/pooler/dense/bias'])
    nsp = softmax(pooled @ W['cls/seq_relationship/output_weights'].T + W['cls/seq_relationship/output_bias'])
    t = gelu(x @ W['cls/predictions/transform/dense/kernel'] + W['cls/predictions/transform/dense/bias'])
    t = layer_norm(t, W['cls/predictions/transform/LayerNorm/gamma'], W['cls/predictions/transform/LayerNorm/beta'])
    mlm_logits = t @ W['bert/embeddings/word_embeddings'].T + W['cls/predictions/output_bias']
    return dict(sequence=x, pooled=pooled, nsp=nsp, mlm_logits=mlm_logits)


def random_batch(rng, vocab_size, lengths, n, segment_split=0.5):
    """Padded (token_ids, segment_ids); row r has lengths[r] real tokens, the last part segment 1."""
    token_ids = np.zeros((len(lengths), n), dtype='int32')
    segment_ids = np.zeros((len(lengths), n), dtype='int32')
    for row, length in enumerate(lengths):
        token_ids[row, :length] = rng.randint(1, vocab_size, size=length)
        segment_ids[row, int(length * segment_split):length] = 1
    return token_ids, segment_ids
