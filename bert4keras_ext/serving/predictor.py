"""Load a saved model for serving and call it on padded numpy batches.

Two kinds of file are accepted:

- a Keras ``.keras`` file (``model.save('m.keras')``): loaded with this package's layers registered,
  ``compile=False`` (serving needs no loss; a CRF's bound-method loss could not be rebuilt anyway);
- a TensorFlow SavedModel directory written by ``model.export(dir)`` (Keras 3): its ``serve``
  endpoint is called. Layers' Python objects are gone there, so tasks that read a layer's weights
  (the NER task's CRF transitions) need the ``.keras`` file.

Calls go through one ``tf.function`` with ``(None, None)`` input shapes, so every batch size and
padded length reuses one trace instead of retracing per shape.
"""
import os

import numpy as np

__all__ = ['Predictor', 'load_predictor']


class Predictor(object):
    """A model as a function of padded id arrays.

    Args:
        function: called with one int/float array (b, n) per model input, returns a tensor.
        n_inputs: 1 (token ids) or 2 (token ids, segment ids).
        input_dtypes: the dtype of each input.
        fixed_length: the sequence length the model was built for, or None when any length works.
        keras_model: the Keras model (None for a SavedModel).
        source: the path it came from (for messages).
    """

    def __init__(self, function, n_inputs, input_dtypes, fixed_length, keras_model, source):
        self.function = function
        self.n_inputs = n_inputs
        self.input_dtypes = input_dtypes
        self.fixed_length = fixed_length
        self.keras_model = keras_model
        self.source = source

    def __call__(self, token_ids, segment_ids):
        """Model output (numpy) for (b, n) token and segment ids (segment ids are dropped for 1-input models)."""
        arrays = [token_ids, segment_ids][:self.n_inputs]
        arrays = [np.asarray(a).astype(d) for a, d in zip(arrays, self.input_dtypes)]
        outputs = self.function(*arrays)
        return np.asarray(outputs)


def _check_inputs(shapes, source):
    if len(shapes) not in (1, 2) or any(len(s) != 2 for s in shapes):
        raise ValueError('%s: expected a model with inputs [token_ids] or [token_ids, segment_ids], each '
                         '(batch, length); found %d input(s) of shapes %s'
                         % (source, len(shapes), [tuple(s) for s in shapes]))
    lengths = {s[1] for s in shapes}
    if len(lengths) != 1:
        raise ValueError('%s: the inputs have different lengths %s' % (source, sorted(lengths, key=str)))
    return lengths.pop()


def _load_keras(path):
    import keras
    import tensorflow as tf

    import bert4keras_ext.layers  # noqa: F401  registers the package's layers (heads included) for loading
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError('%s: could not load the Keras model (%s: %s)' % (path, type(e).__name__, e)) from e
    if len(model.outputs) != 1:
        raise ValueError('%s: expected a model with one output, found %d' % (path, len(model.outputs)))
    shapes = [tuple(x.shape) for x in model.inputs]
    fixed_length = _check_inputs(shapes, path)
    dtypes = [str(x.dtype) for x in model.inputs]
    specs = [tf.TensorSpec((None, fixed_length), d) for d in dtypes]

    @tf.function(input_signature=specs)
    def call(*arrays):
        return model(list(arrays), training=False)

    return Predictor(lambda *a: call(*a).numpy(), len(specs), dtypes, fixed_length, model, path)


def _load_saved_model(path):
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:
        raise ValueError('%s: could not load the SavedModel (%s: %s)' % (path, type(e).__name__, e)) from e
    serve = getattr(loaded, 'serve', None)
    if serve is None:
        raise ValueError("%s: the SavedModel has no 'serve' endpoint; write it with Keras' model.export(dir)"
                         % path)
    concrete = serve.concrete_functions[0] if hasattr(serve, 'concrete_functions') else serve
    specs = tf.nest.flatten(concrete.structured_input_signature[0])
    fixed_length = _check_inputs([tuple(s.shape) for s in specs], path)
    dtypes = [s.dtype.name for s in specs]
    structure = concrete.structured_input_signature[0][0] if len(concrete.structured_input_signature[0]) == 1 \
        else None

    def call(*arrays):
        # Keras exports a multi-input model's endpoint as serve([ids, segments]); a single input as serve(ids)
        if isinstance(structure, (list, tuple)):
            out = serve(list(arrays))
        else:
            out = serve(*arrays)
        if isinstance(out, dict):
            if len(out) != 1:
                raise ValueError('%s: the serve endpoint returns %d outputs; expected one' % (path, len(out)))
            out = next(iter(out.values()))
        return out.numpy()

    predictor = Predictor(call, len(specs), dtypes, fixed_length, None, path)
    predictor.saved_model = loaded  # the endpoint's variables live as long as this object
    return predictor


def load_predictor(path):
    """A `Predictor` for a ``.keras`` file or a SavedModel directory (see the module docstring).

    Raises:
        ValueError: naming the path, when it is neither, cannot be loaded, or its inputs are not
            ``[token_ids]`` / ``[token_ids, segment_ids]`` of shape (batch, length).
    """
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'saved_model.pb')):
            raise ValueError('%s is a directory without saved_model.pb: expected a SavedModel written by '
                             "model.export(dir), or give a .keras file" % path)
        return _load_saved_model(path)
    if not os.path.isfile(path):
        raise ValueError('%s does not exist' % path)
    if not path.endswith('.keras'):
        raise ValueError('%s: expected a .keras file (model.save(\'m.keras\')) or a SavedModel directory' % path)
    return _load_keras(path)
