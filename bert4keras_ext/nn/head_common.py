"""What the task heads share (see `bert4keras_ext.heads`): the padding fill value and the `x` / `[x, mask]`
input convention."""
from bert4keras_ext.backend import mask_value

_FILL = mask_value('float32')


def _split_inputs(inputs, mask):
    """(x, mask) from `x` + Keras mask, or from an explicit `[x, mask]` input."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 2:
            raise ValueError('expected an input x or [x, mask], got %d inputs' % len(inputs))
        return inputs[0], inputs[1]
    return inputs, mask
