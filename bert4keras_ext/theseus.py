"""BERT-of-Theseus model compression (Xu et al. 2020; kexue.fm/archives/7575), the bert4keras way.

A fine-tuned *predecessor* (e.g. 6 layers) is compressed into a *successor* (e.g. 3 layers): each
successor layer stands for L/L' consecutive predecessor layers (a "module"). During Theseus training
every module's output is, per batch, the predecessor's or the successor's (`BinaryRandomChoice`),
choosing the successor with the *replace rate*, which `ReplaceRateScheduler` raises linearly to 1; the
predecessor and the classifier are frozen, so the successor learns to slot into the predecessor's
pipeline. Afterwards the successor (with the classifier) is fine-tuned alone::

    predecessor = build_transformer_model(config, ckpt, return_keras_model=False)            # 6 layers
    successor = build_transformer_model(config, ckpt, num_hidden_layers=3, prefix='Successor-',
                                        return_keras_model=False)
    ... train Model(predecessor.inputs, classifier(predecessor.model.output)) ...
    theseus = bert_of_theseus(predecessor, successor, classifier)   # or a head of your own on the encoder
    theseus.compile(...); theseus.fit(..., callbacks=[ReplaceRateScheduler(steps=...)])
    successor_model = keras.Model(successor.inputs, classifier(successor.model.output))  # fine-tune, deploy
"""
from bert4keras_ext.backend import keras, ops

__all__ = ['BinaryRandomChoice', 'ReplaceRateScheduler', 'bert_of_theseus']


@keras.saving.register_keras_serializable(package='bert4keras_ext')
class BinaryRandomChoice(keras.layers.Layer):
    """Per batch, pass one of two same-shaped inputs: ``[predecessor, successor]`` → one of them.

    Training: the successor with probability ``replace_rate`` (one draw per call, i.e. per batch and
    module), else the predecessor. Inference: always the successor. ``replace_rate`` is a
    non-trainable weight, so a callback can change it between steps without re-tracing. The Keras
    mask of the successor input is passed on.
    """

    def __init__(self, replace_rate=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(replace_rate) <= 1.0:
            raise ValueError('BinaryRandomChoice: replace_rate must be in [0, 1], got %r' % (replace_rate,))
        self.initial_replace_rate = float(replace_rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        self.replace_rate = self.add_weight(
            name='replace_rate', shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.initial_replace_rate))

    def call(self, inputs, training=None):
        predecessor, successor = inputs
        if not training:
            return successor
        draw = keras.random.uniform((), seed=self.seed_generator)
        use_successor = draw < ops.cast(self.replace_rate, draw.dtype)
        return ops.where(use_successor, successor, ops.cast(predecessor, successor.dtype))

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            return mask[1]
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(replace_rate=self.initial_replace_rate, seed=self.seed)
        return config


class ReplaceRateScheduler(keras.callbacks.Callback):
    """Linear replacement curriculum: rate(t) = start + (end − start)·min(1, t/steps), t = training batches.

    Sets ``replace_rate`` of every `BinaryRandomChoice` in the model before each batch (Theseus'
    "replacement scheduler" p = min(1, k·t + b)); `steps` defaults to the number of batches of the
    first `fit` (all epochs), so the last batches train the successor alone.
    """

    def __init__(self, start=0.5, end=1.0, steps=None):
        super().__init__()
        self.start, self.end, self.steps = float(start), float(end), steps
        self.step = 0

    def rate(self, step):
        steps = max(int(self.steps or 1), 1)
        return self.start + (self.end - self.start) * min(1.0, step / steps)

    def _choices(self):
        found = []

        def visit(layer):
            if isinstance(layer, BinaryRandomChoice):
                found.append(layer)
            for sub in getattr(layer, 'layers', []):
                visit(sub)

        visit(self.model)
        return found

    def on_train_begin(self, logs=None):
        if self.steps is None:
            epochs, per_epoch = self.params.get('epochs'), self.params.get('steps')
            if not (epochs and per_epoch):
                raise ValueError('ReplaceRateScheduler: pass steps= (fit did not report epochs and steps)')
            self.steps = int(epochs) * int(per_epoch)
        self.choices = self._choices()
        if not self.choices:
            raise ValueError('ReplaceRateScheduler: the model has no BinaryRandomChoice layer')

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.rate(self.step)
        for layer in self.choices:
            layer.replace_rate.assign(rate)
        self.step += 1


def bert_of_theseus(predecessor, successor, classifier=None, replace_rate=0.5, seed=None):
    """The Theseus training model: predecessor and successor modules mixed by `BinaryRandomChoice`.

    Args:
        predecessor: a `Transformer` (``build_transformer_model(..., return_keras_model=False)``),
            already fine-tuned; its layers are frozen here.
        successor: a `Transformer` with fewer layers (a divisor of the predecessor's count) and its own
            layer names (``prefix='Successor-'``); embeddings are a module too.
        classifier: the trained head (a layer or model applied to the encoder's sequence output, as in
            bert4keras), frozen here; None returns the mixed encoder alone, for the caller to add
            (and freeze) its head, e.g. on ``ExtractToken(0)(model.output)``.
        replace_rate: the initial probability of taking a successor module.
        seed: seeds the modules' draws (module i uses seed + i).
    Returns:
        keras.Model on the predecessor's inputs; compile and fit it with `ReplaceRateScheduler`.
    """
    count, target = predecessor.num_hidden_layers, successor.num_hidden_layers
    if target < 1 or count % target:
        raise ValueError('bert_of_theseus: the successor layer count (%d) must divide the predecessor\'s (%d)'
                         % (target, count))
    if predecessor.prefix == successor.prefix:
        raise ValueError("bert_of_theseus: the successor needs its own layer names: build it with "
                         "prefix='Successor-'")
    for layer in predecessor.model.layers:
        layer.trainable = False
    if classifier is not None:
        classifier.trainable = False
    per_module = count // target
    inputs = predecessor.inputs

    def choose(a, b, index):
        return BinaryRandomChoice(replace_rate, seed=None if seed is None else seed + index,
                                  name='%sTheseus-Choice-%d' % (successor.prefix, index))([a, b])

    outputs = choose(predecessor.apply_embeddings(inputs), successor.apply_embeddings(inputs), 0)
    for index in range(target):
        predecessor_outputs = outputs
        for sub_index in range(per_module):
            predecessor_outputs = predecessor.apply_main_layers(predecessor_outputs, per_module * index + sub_index)
        successor_outputs = successor.apply_main_layers(outputs, index)
        outputs = choose(predecessor_outputs, successor_outputs, index + 1)
    if classifier is not None:
        outputs = classifier(outputs)
    return keras.Model(inputs, outputs, name='%sTheseus' % successor.prefix)
