"""The plumbing CRF and MEMM share (`_SequenceHead`): float32 transitions with an lr multiplier, the masking
call, recovering the mask from the -1e12 fill, label and decode-input checks."""
import numpy as np

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.multilabel import check_labels_in_range
from bert4keras_ext.nn.head_common import _FILL, _split_inputs

# Scores at or below this are padding written by a CRF/MEMM layer (fill is -1e12; real emissions
# never get anywhere near).
_FILL_THRESHOLD = _FILL / 2


def _divided_initializer(initializer, multiplier):
    """Wraps an initializer so that the stored variable is init / multiplier (lr_multiplier trick)."""
    initializer = keras.initializers.get(initializer)

    def init(shape, dtype=None):
        return initializer(shape, dtype=dtype) / multiplier

    return init


def _sequence_mask_from_scores(y_pred):
    """(b, n) float32 mask of real steps of a CRF/MEMM output (padding was filled with -1e12)."""
    return ops.cast(ops.all(ops.greater(y_pred, _FILL_THRESHOLD), axis=-1), 'float32')


def _labels_like(y_true, y_pred):
    """Integer labels (b, n) from whatever shape Keras hands a loss ((b, n) or (b, n, 1))."""
    y_true = ops.reshape(y_true, ops.shape(y_pred)[:-1])
    return ops.cast(y_true, 'int32')


class _SequenceHead(keras.layers.Layer):
    """Shared plumbing of CRF and MEMM: lr_multiplier variables, masking call, mask recovery."""

    def __init__(self, lr_multiplier=1, **kwargs):
        kwargs.pop('autocast', None)
        # autocast off: transitions must be read in float32 under 16-bit policies
        super().__init__(autocast=False, **kwargs)
        lr_multiplier = float(lr_multiplier)
        if not lr_multiplier > 0:
            raise ValueError('%s: lr_multiplier must be > 0, got %r' % (type(self).__name__, lr_multiplier))
        self.lr_multiplier = lr_multiplier
        self.supports_masking = True

    def _add_scaled_weight(self, name, shape):
        return self.add_weight(name=name, shape=shape, dtype='float32',
                               initializer=_divided_initializer('glorot_uniform', self.lr_multiplier))

    def _scaled(self, variable):
        value = ops.cast(variable, 'float32')
        if self.lr_multiplier != 1:
            value = value * self.lr_multiplier
        return value

    @staticmethod
    def _num_labels(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        num_labels = input_shape[-1]
        if num_labels is None:
            raise ValueError('the last axis (number of labels) must be known when the layer is built')
        return int(num_labels)

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        x = ops.cast(x, 'float32')
        if mask is None:
            return x
        return ops.where(ops.cast(mask, 'bool')[:, :, None], x, _FILL)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def compute_output_spec(self, inputs, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(x.shape, dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.pop('autocast', None)
        config['lr_multiplier'] = self.lr_multiplier
        return config

    def _prepare(self, y_pred):
        """float32 scores with padded steps zeroed, and the (b, n) float mask."""
        y_pred = ops.cast(y_pred, 'float32')
        mask = _sequence_mask_from_scores(y_pred)
        return y_pred * mask[:, :, None], mask

    def _check_scores(self, y_pred):
        if y_pred.shape[-1] is not None and self.built and y_pred.shape[-1] != self.num_labels:
            raise ValueError('%s: y_pred has %d labels on its last axis, the layer was built for %d'
                             % (self.name, y_pred.shape[-1], self.num_labels))

    def _check_decode_input(self, y_pred, mask):
        """y_pred as numpy when given as a list; clear errors for a wrong rank / label count."""
        if isinstance(y_pred, (list, tuple)) or not hasattr(y_pred, 'shape'):
            y_pred = np.asarray(y_pred, dtype='float32')
        shape = tuple(y_pred.shape)
        expected = '(b, n, num_labels) = (batch, steps, %s)' % (self.num_labels if self.built else 'num_labels')
        if len(shape) != 3:
            raise ValueError('%s.decode: y_pred must be %s scores, got shape %s; for one sequence add a batch '
                             'axis (y_pred[None])' % (type(self).__name__, expected, shape))
        if self.built and shape[-1] is not None and shape[-1] != self.num_labels:
            raise ValueError('%s.decode: y_pred must be %s scores, got %d labels on the last axis (shape %s)'
                             % (type(self).__name__, expected, shape[-1], shape))
        if mask is not None:
            mask_shape = tuple(np.shape(mask) if isinstance(mask, (list, tuple)) else mask.shape)
            if len(mask_shape) != 2:
                raise ValueError('%s.decode: mask must be (b, n) = (batch, steps) to match y_pred %s, got '
                                 'shape %s' % (type(self).__name__, shape, mask_shape))
        return y_pred

    def _sparse_labels(self, y_true, y_pred, mask):
        y_true = _labels_like(y_true, y_pred)
        y_true = check_labels_in_range(y_true, self.num_labels, '%s labels' % self.name,
                                       valid=ops.cast(mask, 'bool'))
        return ops.where(ops.cast(mask, 'bool'), y_true, 0)
