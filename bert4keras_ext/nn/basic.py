"""Small layers: a mask-keeping `Add`, `ExtractToken` (one position of a sequence) and bert4keras' `Loss`."""
from bert4keras_ext.backend import keras, ops
from bert4keras_ext.nn.common import register

__all__ = ['Add', 'ExtractToken', 'Loss']


@register
class Add(keras.layers.Add):
    """`keras.layers.Add` that keeps the mask of the inputs that have one.

    Keras 3's merge layers drop the mask as soon as one input has none, so token embedding (masked,
    id 0 = padding) + segment embedding (unmasked) would lose the padding mask that downstream layers
    (CRF, pooling, `Loss.compute_loss`) rely on. Keras 2 — and so bert4keras — combined only the
    masks that exist; this does the same (AND of the given masks).
    """

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        masks = [m for m in mask if m is not None]
        if not masks:
            return None
        output = masks[0]
        for m in masks[1:]:
            output = ops.logical_and(output, m)
        return output

@register
class ExtractToken(keras.layers.Layer):
    """Picks one position of a sequence: (b, n, d) → (b, d). BERT's pooler reads [CLS] (index 0)."""

    def __init__(self, index=0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config['index'] = self.index
        return config

@register
class Loss(keras.layers.Layer):
    """A layer that adds a loss to the model — the bert4keras way of writing losses inside the graph.

    Subclass and implement `compute_loss(inputs, mask=None)`; the layer adds that loss with
    `add_loss` and returns `inputs[output_axis]` (or all inputs when `output_axis` is None), e.g.::

        class CrossEntropy(Loss):
            def compute_loss(self, inputs, mask=None):
                y_true, y_pred = inputs
                return K.mean(K.sparse_categorical_crossentropy(y_true, y_pred))

        output = CrossEntropy(1)([y_in, model.output])
        train_model = keras.Model(model.inputs + [y_in], output)
        train_model.compile(optimizer=Adam(2e-5))          # no `loss=`: the layer supplies it
    """

    def __init__(self, output_axis=None, **kwargs):
        super().__init__(**kwargs)
        self.output_axis = output_axis
        self.supports_masking = True

    def call(self, inputs, mask=None):
        loss = self.compute_loss(inputs, mask)
        self.add_loss(loss)
        if self.output_axis is None:
            return inputs
        if isinstance(self.output_axis, (list, tuple)):
            return [inputs[i] for i in self.output_axis]
        return inputs[self.output_axis]

    def compute_loss(self, inputs, mask=None):
        raise NotImplementedError('Subclasses of Loss implement compute_loss(inputs, mask=None)')

    def compute_mask(self, inputs, mask=None):
        if mask is None or self.output_axis is None:
            return mask
        if isinstance(self.output_axis, (list, tuple)):
            return [mask[i] for i in self.output_axis]
        return mask[self.output_axis]

    def compute_output_shape(self, input_shape):
        if self.output_axis is None:
            return input_shape
        if isinstance(self.output_axis, (list, tuple)):
            return [input_shape[i] for i in self.output_axis]
        return input_shape[self.output_axis]

    def get_config(self):
        config = super().get_config()
        config['output_axis'] = self.output_axis
        return config
