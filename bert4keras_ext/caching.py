"""The key/value cache protocol: how a model's own layers run one decoding step.

Training, inference and cached decoding call the same layers. `Transformer.cached_call(inputs, caches,
decoding)` runs the model's usual steps (`apply_embeddings` → `apply_main_layers` → `apply_final_layers`) on
the *new* tokens of each row only; every layer that mixes positions takes two extra arguments and returns
its updated cache, as keras-hub's cached attention and Hugging Face's `past_key_values` do::

    outputs, cache = layer(inputs, cache=cache, decoding=decoding)

* `decoding` (a `Decoding`) is shared by every layer of one call: the position ids of the new tokens, the
  slot of the per-row cache block where they are written, and, when the rows continue a shared prefix
  (the encoded source of a beam search), how rows map onto prefix rows.
* `cache` is the layer's own state, a dict with up to three parts:
  - ``'rows'``: one row per decoded row (beam / sample), a block of `capacity` slots written at
    ``decoding.index``; the decoder reorders these rows (``take(rows, parents)``) as beams move;
  - ``'prefix'``: read-only state of a shared prefix, one row per *input* (never copied per beam);
  - ``'constants'``: values derived from the weights once per search (e.g. the fused query/key/value
    kernel), so the step does not recompute them.
  `None` starts a cache: the layer's rows block is then exactly the new tokens (a prefill).
* A cache-aware layer class sets ``supports_decoding_cache = True`` and has
  ``continue_cache(cache, rows, capacity, prefix_rows=None, prefix_length=None)``: turn the cache of a
  prefill into the cache of the steps after it (the filled rows become the shared prefix, padded to
  `prefix_rows` × `prefix_length` invisible slots; a fresh rows block of `rows` × `capacity` slots whose row i
  continues prefix row i).

Position-wise layers (embeddings lookups, dense, norms, feed-forward, dropout) run unchanged on the new
tokens. This module imports only the backend: layers and models use it, never the reverse.
"""
import numpy as np

from bert4keras_ext.backend import keras, ops

__all__ = ['Decoding', 'DecodingContext', 'PrefixGrouping', 'prefix_grouping', 'write_slots', 'grouped_matmul', 'pad_axis']


class PrefixGrouping:
    """How the decoded rows of a step map onto the rows of a shared prefix block.

    Rows of one input (its beams) are laid side by side, `width` slots per input, so their queries meet
    the input's prefix keys in one batched matmul without copying the prefix per row.

    Args:
        owner: (rows,) int32: the prefix row each decoded row continues.
        grouped_rows: (n_prefix · width,) int32: the row filling each grouping slot; an empty slot holds
            `rows` (it reads an appended zero row).
        group_slot: (rows,) int32: the grouping slot of each row.
    """

    def __init__(self, owner, grouped_rows, group_slot):
        self.owner = owner
        self.grouped_rows = grouped_rows
        self.group_slot = group_slot

    def group(self, t, n_prefix):
        """(rows, h, n, m) → (n_prefix, h, width · n, m): each prefix row's decoded rows side by side."""
        shape = ops.shape(t)
        t = ops.take(ops.concatenate([t, ops.zeros_like(t[:1])], axis=0), self.grouped_rows, axis=0)
        t = ops.reshape(t, (n_prefix, -1, shape[1], shape[2], shape[3]))           # (p, w, h, n, m)
        t = ops.transpose(t, (0, 2, 1, 3, 4))                                        # (p, h, w, n, m)
        return ops.reshape(t, (n_prefix, shape[1], -1, shape[3]))

    def ungroup(self, t, n):
        """(n_prefix, h, width · n, m) → (rows, h, n, m)."""
        shape = ops.shape(t)
        t = ops.reshape(t, (shape[0], shape[1], -1, n, shape[3]))                    # (p, h, w, n, m)
        t = ops.transpose(t, (0, 2, 1, 3, 4))                                        # (p, w, h, n, m)
        t = ops.reshape(t, (-1, shape[1], n, shape[3]))
        return ops.take(t, self.group_slot, axis=0)


class Decoding:
    """What the cache-aware layers of one `Transformer.cached_call` share.

    Args:
        positions: (rows, n) int32 position ids of the new tokens.
        index: scalar int32, the slot of the rows block where the first new token is written.
        grouping: a `PrefixGrouping` when the caches hold a shared prefix, else None.
        portable: write cache slots with standard TensorFlow ops only (`write_slots`), for graphs that run
            outside XLA-enabled TensorFlow (TF Serving); False uses the in-place update XLA compiles best.
    """

    def __init__(self, positions, index=0, grouping=None, portable=False):
        self.positions = positions
        self.index = index
        self.grouping = grouping
        self.portable = portable

    def write(self, block, new, axis):
        """`block` (rows, ..., T, ...) with the new tokens' `new` written at slot `index` along `axis`."""
        return write_slots(block, new, self.index, axis, portable=self.portable)

    @classmethod
    def prefill(cls, token_ids):
        """Decoding of whole sequences from position 0 with fresh caches (token_ids (b, n))."""
        shape = ops.shape(token_ids)
        positions = ops.broadcast_to(ops.arange(shape[1], dtype='int32')[None], (shape[0], shape[1]))
        return cls(positions, index=0, grouping=None)


def write_slots(block, new, index, axis, portable=False):
    """`block` with `new` written at `index` along `axis` (n = new.shape[axis] slots).

    The default is Keras' `slice_update`, which TensorFlow lowers to an in-place `XlaDynamicUpdateSlice`: the
    fastest in the XLA-compiled decoding step, but an op that TF Serving's CPU build runs only with XLA
    compilation enabled and its GPU build not at all. `portable=True` builds the same result from standard
    ops (pad, roll, select), for exported graphs.
    """
    new = ops.cast(new, block.dtype)
    if not portable:
        start = [0] * len(block.shape)
        start[axis] = index
        return ops.slice_update(block, tuple(start), new)
    import tensorflow as tf
    length, n = tf.shape(block)[axis], tf.shape(new)[axis]
    widths = [[0, 0]] * len(block.shape)
    widths[axis] = [0, length - n]
    moved = tf.roll(tf.pad(new, widths), shift=index, axis=axis)        # the new slots at index .. index + n
    slots = tf.range(length)
    inside = tf.logical_and(slots >= index, slots < index + n)
    inside = tf.reshape(inside, [-1 if a == axis else 1 for a in range(len(block.shape))])
    return tf.where(inside, moved, block)


def grouped_matmul(a, b, grouping):
    """Per row, `a` (rows, h, n, k) times its prefix row's `b` (n_prefix, h, k, m) → (rows, h, n, m)."""
    n = ops.shape(a)[2]
    return grouping.ungroup(ops.matmul(grouping.group(a, ops.shape(b)[0]), ops.cast(b, a.dtype)), n)


def pad_axis(t, axis, size, value=0):
    """`t` padded at the end of `axis` to `size` entries (no-op when it is already that long)."""
    missing = size - t.shape[axis]
    if missing <= 0:
        return t
    widths = [(0, 0)] * len(t.shape)
    widths[axis] = (0, missing)
    return ops.pad(t, widths, constant_values=value)


def prefix_grouping(owner, n_prefix, width, capacity):
    """The grouping indices of a step (numpy): rows of each prefix row side by side, `width` slots each.

    owner (rows,): the prefix row each decoded row continues. Returns (grouped_rows (n_prefix · width,),
    group_slot (capacity,)): empty grouping slots point at row `capacity` (a zero row); padding rows (after
    the real ones) read slot 0 and are ignored.
    """
    owner = np.asarray(owner, dtype='int64')
    rank = np.zeros(len(owner), dtype='int32')
    seen = np.zeros(n_prefix, dtype='int32')
    for row, prefix_row in enumerate(owner):
        rank[row] = seen[prefix_row]
        seen[prefix_row] += 1
    group_slot = np.zeros(capacity, dtype='int32')
    group_slot[:len(owner)] = owner * width + rank
    grouped_rows = np.full(n_prefix * width, capacity, dtype='int32')
    grouped_rows[group_slot[:len(owner)]] = np.arange(len(owner), dtype='int32')
    return grouped_rows, group_slot


class DecodingContext:
    """The bookkeeping of one `Transformer.cached_call`: hands each cache-aware layer call its cache, in
    call order (ALBERT calls one shared layer once per encoder layer, each call with its own cache), and
    collects the updated caches.

    Args:
        caches: the caches of an earlier call (same model, same call order), or None to start.
        decoding: the `Decoding` of this call.
        logits: run a final softmax `Activation` as the identity, so the decoder gets logits (exact
            log-probabilities up to a constant) instead of probabilities.
        position_wise: layer classes known to act on each position alone; any other layer class without a
            cache is recorded in `unverified`, so the decoder can check the cached model against the full one.
    """

    def __init__(self, caches, decoding, logits=True, position_wise=()):
        self.caches_in = None if caches is None else list(caches)
        self.decoding = decoding
        self.logits = logits
        self.position_wise = tuple(position_wise)
        self.caches = []
        self.layers = []
        self.unverified = set()

    def call(self, layer, inputs, arguments):
        """Call `layer` on `inputs` for decoding; returns its outputs."""
        if getattr(layer, 'supports_decoding_cache', False):
            index = len(self.caches)
            if self.caches_in is not None and index >= len(self.caches_in):
                raise RuntimeError('cached decoding: layer %r is called more often than when its cache was made'
                                   % layer.name)
            cache = None if self.caches_in is None else self.caches_in[index]
            outputs, cache = layer(inputs, cache=cache, decoding=self.decoding, **arguments)
            self.caches.append(cache)
            self.layers.append(layer)
            return outputs
        if getattr(layer, 'uses_decoding_positions', False):
            return layer(inputs, decoding=self.decoding, **arguments)
        if self.logits and _is_softmax_activation(layer):
            return ops.cast(inputs, 'float32')
        if not isinstance(layer, self.position_wise) or getattr(layer, 'conditional', False):
            self.unverified.add(type(layer).__name__)
        return layer(inputs, **arguments)

    def finish(self):
        if self.caches_in is not None and len(self.caches) != len(self.caches_in):
            raise RuntimeError('cached decoding: %d caches were given but the model used %d'
                               % (len(self.caches_in), len(self.caches)))


def _is_softmax_activation(layer):
    if not isinstance(layer, keras.layers.Activation):
        return False
    return getattr(layer.activation, '__name__', None) == 'softmax'
