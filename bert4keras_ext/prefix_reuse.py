"""A key/value cache behind bert4keras-style `self.last_token(model).predict(inputs)` calls.

bert4keras decoders re-run the whole sequence every step::

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids = np.concatenate([inputs[0], output_ids], 1)
        segment_ids = np.concatenate([inputs[1], np.ones_like(output_ids)], 1)
        return self.last_token(model).predict([token_ids, segment_ids])

When `model` was built by this package as a language model ('lm' / 'unilm') — or is a model on its inputs
whose extra layers act on each position (bert4keras' training model with a `CrossEntropy` output) —
`PrefixReuse` notices that the rows of each call extend rows of the previous call (the same tokens plus new
ones; rows duplicated, reordered or dropped as beams move and samples finish) and runs only the new tokens
through the model (`incremental.IncrementalModel`), so a ported decoder runs at the speed of
`generation.CachedDecoder`. Anything else — a changed prefix, padding, another input layout, other segment
ids than the model's application gives generated tokens, a full cache — is answered by the full model, and the
next call starts a new cache from it.

Results equal full recomputation: the first call of a search runs the whole rows (the prefill that fills
the cache is the model's own forward pass; with layers after the transformer, the full model answers), and
the first cached answer for each model is compared with the full model's once; if
they differ beyond float rounding, the model is never served from the cache again (a warning says why).
Switch it off with `AutoRegressiveDecoder(..., kv_cache=False)`, `decoder.kv_cache = False`, or the
environment variable `BERT4KERAS_EXT_KV_CACHE=0`.
"""
import os
import warnings

import numpy as np

from bert4keras_ext.backend import keras
from bert4keras_ext.incremental import IncrementalModel
from bert4keras_ext.modeling.transformer import transformer_of

__all__ = ['PrefixReuse', 'kv_cache_enabled']

# Probabilities from the cache and from the full model agree to float rounding (measured ~1e-7); a
# structural difference (a head that mixes positions) is orders of magnitude larger.
_TOLERANCE = 1e-4


def kv_cache_enabled():
    """False when the environment variable BERT4KERAS_EXT_KV_CACHE is set to 0 / false / no / off."""
    return os.environ.get('BERT4KERAS_EXT_KV_CACHE', '1').strip().lower() not in ('0', 'false', 'no', 'off')


class PrefixReuse:
    """Answers `last_token(model).predict(inputs)` from a key/value cache when the rows extend earlier rows.

    Args:
        model: the Keras model whose last-position outputs are wanted.
        jit_compile: XLA-compile the cached step (as `CachedDecoder`).
    `usable` is False (and `reason` says why) when the model is not a single-output language model built by this
    package, or a position-wise head on one; `LastTokenModel` then always uses Keras' predict.
    """

    def __init__(self, model, jit_compile=True):
        self.model = model
        self.usable = False
        self.reason = None
        self.verified = False
        self.state = None
        self.tokens = None        # (rows, L) the token ids of the rows the cache holds
        self.segments = None
        self.engine = None
        self.head = None
        transformer = transformer_of(model)
        if transformer is None:
            self.reason = 'the model was not built by bert4keras_ext'
            return
        if len(transformer.outputs) != 1 or len(model.outputs) != 1:
            self.reason = 'the model has several outputs'
            return
        try:
            self.engine = IncrementalModel(transformer, jit_compile=jit_compile, verify=False)
        except (ValueError, NotImplementedError) as e:  # not an LM / UniLM, extra inputs, ...
            self.reason = str(e)
            return
        if model is not transformer.model:
            try:  # the layers between the transformer's output and the model's output, as a model of their own
                self.head = keras.Model(list(transformer.inputs) + list(transformer.outputs), model.outputs)
            except Exception as e:  # outputs that do not depend on the transformer's output only
                self.reason = 'the layers after the transformer cannot be separated (%s)' % e
                return
        self.usable = True

    # ----------------------------------------------------------------------------------------------
    def predict(self, inputs, full_predict, rows_hint=None, max_new_tokens=None):
        """The last-position outputs for `inputs` ([token_ids, segment_ids] or [token_ids], (rows, L)),
        from the cache when possible; `full_predict(inputs)` answers otherwise (and starts a new cache)."""
        parsed = self._parse(inputs)
        if parsed is None:
            self.state = None
            return full_predict(inputs)
        token_ids, segment_ids = parsed
        extension = self._extension(token_ids, segment_ids)
        if extension is not None:
            try:
                logits, state = self._extend(*extension)
            except ValueError:  # the cache is full (more steps than announced): start again
                extension = None
        if extension is None:
            logits = self._start(token_ids, segment_ids, rows_hint, max_new_tokens)
            if logits is not None and self.head is None:
                # the prefill ran the model's own layers over the whole rows: it is the full model's answer
                return self._outputs(token_ids, segment_ids, logits)
            return full_predict(inputs)
        outputs = self._outputs(token_ids, segment_ids, logits)
        if not self.verified:
            expected = full_predict(inputs)
            worst = float(np.abs(np.asarray(expected, 'float64') - outputs).max())
            if not worst <= _TOLERANCE:
                self.usable = False
                self.state = None
                warnings.warn('last_token(%s).predict: answers from the key/value cache differ from the full '
                              'model by %.3g, so this model is always recomputed in full (a layer after the '
                              'transformer probably mixes positions)' % (self.model.name, worst), stacklevel=4)
                return expected
            self.verified = True
        self.state, self.tokens, self.segments = state, token_ids, segment_ids
        return outputs

    # ----------------------------------------------------------------------------------------------
    def _parse(self, inputs):
        """(token_ids, segment_ids) as int arrays (rows, L) without padding, or None if the call does not fit."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != (2 if self.engine.with_segments else 1):
            return None
        arrays = [np.asarray(x) for x in inputs]
        if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays) or arrays[0].size == 0:
            return None
        if any(a.dtype.kind not in 'iuf' or (a.dtype.kind == 'f' and not np.array_equal(a, np.round(a)))
               for a in arrays):
            return None
        token_ids = arrays[0].astype('int64')
        if (token_ids == 0).any():  # padding: rows of different lengths are left to the full model
            return None
        segment_ids = arrays[1].astype('int64') if len(arrays) > 1 else np.zeros_like(token_ids)
        return token_ids, segment_ids

    def _extension(self, token_ids, segment_ids):
        """(parents, new tokens) when every row extends a row of the cache with tokens the model's
        application gives generated positions; else None."""
        if self.state is None:
            return None
        length = self.tokens.shape[1]
        if token_ids.shape[1] <= length:
            return None
        new_segment = 1 if self.engine.mode == 'unilm' else 0
        if self.engine.with_segments and (segment_ids[:, length:] != new_segment).any():
            return None
        index = {}
        for row, (ids, segments) in enumerate(zip(self.tokens, self.segments)):
            index.setdefault((ids.tobytes(), segments.tobytes()), row)
        parents = []
        for ids, segments in zip(token_ids, segment_ids):
            parent = index.get((ids[:length].tobytes(), segments[:length].tobytes()))
            if parent is None:
                return None
            parents.append(parent)
        return np.array(parents), token_ids[:, length:]

    def _start(self, token_ids, segment_ids, rows_hint, max_new_tokens):
        """A new cache holding `token_ids`; returns the logits at the rows' last tokens (rows, vocab), or None
        (and no cache) when the rows leave no room in the position table."""
        rows = len(token_ids)
        width = max(1, -(-int(rows_hint or rows) // rows))
        capacity = int(max_new_tokens or 64)
        limit = self.engine.position_embedding.max_length if self.engine.position_embedding is not None else None
        if limit is not None:
            if token_ids.shape[1] >= limit:
                self.state = None
                return None
            capacity = min(capacity, limit - token_ids.shape[1])
        logits, self.state = self.engine.start(token_ids, segment_ids, capacity, rows_per_input=width)
        self.tokens, self.segments = token_ids, segment_ids
        return logits

    def _extend(self, parents, new_tokens):
        """Rows `parents` of the cache, each extended by its row of `new_tokens` (rows, k); the logits after
        the last one."""
        state, rows, logits = self.state, parents, None
        for column in new_tokens.T:
            logits, state = self.engine.step(column, state, rows=rows)
            rows = None
        return logits, state

    def _outputs(self, token_ids, segment_ids, logits):
        """The model's last-position outputs from the transformer's logits there."""
        logits = logits - logits.max(axis=-1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        transformer = self.engine.transformer
        output = logits if transformer.with_mlm == 'linear' else probabilities
        if self.head is None:
            return output.astype('float32')
        inputs = [token_ids[:, -1:].astype('float32')]
        if self.engine.with_segments:
            inputs.append(segment_ids[:, -1:].astype('float32'))
        result = self.head(inputs + [output[:, None, :].astype('float32')], training=False)
        return np.asarray(result)[:, -1].astype('float32')
