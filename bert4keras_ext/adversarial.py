"""Adversarial training on the token-embedding matrix: FGM, gradient penalty, virtual adversarial training.

bert4keras replaced a compiled Keras 2 model's ``train_function``; here the same one-line calls turn a
model into one whose Keras 3 ``train_step`` makes the extra passes, so ``model.fit`` (also with
``jit_compile=True``, under ``tf.distribute`` strategies and with loss scaling) trains adversarially::

    model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(2e-5), metrics=['accuracy'])
    adversarial_training(model, 'Embedding-Token', epsilon=0.5)     # in place; returns the model
    model.fit(...)

How it hooks: the model's class is switched, for this instance only, to a subclass of its own class
(``Functional`` → ``AdversarialFunctional``) that overrides ``train_step``; nothing in Keras is patched and
other models are untouched. The subclass is registered for serialization and its config records the
settings, so ``model.save('m.keras')`` + ``keras.saving.load_model`` gives back a hooked model (import
this module first). ``remove_adversarial_training(model)`` switches the class back.

What a step does (E = the embedding matrix of layer ``embedding_name``, L = the compiled loss):

* ``method='fgm'`` (bert4keras ``adversarial_training``): g = ∂L/∂E (dense, summed over the batch and
  over replicas, weights in inference mode as bert4keras did); E ← E + ε·g/(‖g‖+1e-8); gradients of L
  at the perturbed E (training mode); E is restored exactly; then the optimizer applies those gradients.
  Only the adversarial loss is optimised, and that is the loss ``fit`` reports.
* ``method='gradient_penalty'``: L + ½·ε·Σ_{b,i}‖∂L/∂e_{b,i}‖², with L the loss averaged over the global
  batch and e_{b,i} the embedding row looked up at position i of sample b — exactly bert4keras'
  ``loss_with_gradient_penalty``: it took ``K.gradients(K.mean(losses), [E])[0].values``, the IndexedSlices
  rows of the batch mean's gradient, i.e. (1/B)·∂L_b/∂e_{b,i} (so at a given ε the penalty shrinks with
  the batch size B, as it did there). Under a strategy every replica penalises its own rows of the
  global-mean gradient, which sums to the single-device value. When
  E is also used as a dense weight (tied MLM output) the dense gradient's squared sum is used.
* ``virtual_adversarial_training`` (bert4keras' VAT example): targets = the model's own predictions
  (inference mode, no gradient); u ~ N(0, I) shaped like E; ``iters`` times: u ← ξ·u/‖u‖, u ← ∂L(targets,
  f(E+u))/∂E; then one training step at E + ε·u/‖u‖ against the targets, and E restored. Compile the VAT
  model with a divergence loss (``loss='kld'``); its labels are ignored, so unlabeled data works.

Under mixed precision the perturbation gradients are taken on the scaled loss and unscaled; a
non-finite gradient gives a zero perturbation (the loss-scale optimizer then skips the step as usual).
"""
import numbers

import numpy as np
import tensorflow as tf

from bert4keras_ext import _tf_private
from bert4keras_ext.backend import keras
from bert4keras_ext.graph_utils import find_layer_in_model

__all__ = [
    'adversarial_training', 'gradient_penalty_training', 'virtual_adversarial_training',
    'remove_adversarial_training', 'search_layer', 'AdversarialModel',
]

_PACKAGE = 'bert4keras_ext'
_CONFIG_KEY = 'bert4keras_adversarial'


def search_layer(model, name):
    """The layer called `name` in `model` or in any model nested inside it (bert4keras' `search_layer`)."""
    return find_layer_in_model(model, name)


class _Settings:
    """The hook's parameters (a plain object, kept out of Keras' attribute tracking)."""

    def __init__(self, method, embedding_name, epsilon, xi=10.0, iters=1, seed=None):
        self.method = method
        self.embedding_name = embedding_name
        self.epsilon = float(epsilon)
        self.xi = float(xi)
        self.iters = int(iters)
        self.seed = seed
        self.embeddings = None

    def to_config(self):
        config = {'method': self.method, 'embedding_name': self.embedding_name, 'epsilon': self.epsilon}
        if self.method == 'vat':
            config.update(xi=self.xi, iters=self.iters, seed=self.seed)
        return config


# ---------------------------------------------------------------------------------------------------
# Variable updates from inside a (replica) train step
# ---------------------------------------------------------------------------------------------------
def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _update_everywhere(variable, fn, value):
    """Run ``fn(v, value)`` on every replica's copy of `variable` from a replica context.

    A mirrored variable cannot be assigned from one replica; like Keras' optimizers, go through
    ``merge_call`` + ``extended.update``, which gives each device's copy that device's `value`.
    Without a strategy this is a plain ``fn(variable, value)``.
    """
    target = _tf_variable(variable)
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context
        return tf.distribute.get_strategy().extended.update(target, fn, args=(value,), group=False)

    def merge_fn(strategy, target, value):
        return strategy.extended.update(target, fn, args=(value,), group=False)

    return context.merge_call(merge_fn, args=(target, value))


def _perturb(variable, delta):
    """E ← E + delta; returns the exact previous value for `_restore`."""
    backup = tf.identity(tf.convert_to_tensor(_tf_variable(variable)))
    _update_everywhere(variable, lambda v, d: v.assign_add(tf.cast(d, v.dtype)), delta)
    return backup


def _restore(variable, backup):
    _update_everywhere(variable, lambda v, b: v.assign(b), backup)


def _sum_over_replicas(value):
    context = tf.distribute.get_replica_context()
    if context is None or tf.distribute.get_strategy().num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _normalized(value, scale):
    """scale·value/(‖value‖ + 1e-8), or zeros when the norm is not finite (fp16 overflow)."""
    value = tf.cast(value, 'float32')
    norm = tf.norm(value)
    result = scale * value / (norm + 1e-8)
    return tf.where(tf.math.is_finite(norm), result, tf.zeros_like(result))


def _as_dense(gradient):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


# ---------------------------------------------------------------------------------------------------
# The train step
# ---------------------------------------------------------------------------------------------------
class AdversarialModel:
    """Mixin whose ``train_step`` does the adversarial passes; see the module docstring.

    Not used directly: `adversarial_training` & co. put it in front of a model's own class.
    """

    _adversarial_base = None

    # --------------------------------------------------------------------------- helpers
    def _adversarial_settings(self):
        settings = self.__dict__.get('_b4k_adversarial')
        if settings is None:
            raise RuntimeError('%s has no adversarial settings; hook it with adversarial_training()' % self.name)
        return settings

    def _loss(self, x, y, y_pred, sample_weight, training):
        compute_loss = _tf_private.model_compute_loss(self)  # tolerates compute_loss without `training`
        if compute_loss is not None:
            return compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)

    def _scale(self, loss):
        return self.optimizer.scale_loss(loss) if self.optimizer is not None else loss

    def _loss_scale(self):
        """The factor `_scale` multiplies by (1 without loss scaling)."""
        return tf.cast(self._scale(tf.ones((), 'float32')), 'float32')

    def _embedding_gradient(self, embeddings, x, y, sample_weight, training):
        """Dense ∂L/∂E at the current weights, summed over replicas (E's direction is global)."""
        with tf.GradientTape() as tape:
            tape.watch(_tf_variable(embeddings))
            y_pred = self(x, training=training)
            loss = self._loss(x, y, y_pred, sample_weight, training=training)
            scaled = self._scale(loss)
        gradient = tape.gradient(scaled, _tf_variable(embeddings))
        if gradient is None:
            raise ValueError('the loss does not depend on the embedding matrix %r' % embeddings.path)
        gradient = tf.cast(_as_dense(gradient), 'float32') / self._loss_scale()
        return _sum_over_replicas(gradient)

    def _gradients(self, x, y, sample_weight):
        """(loss, y_pred, gradients of the scaled loss) in training mode at the current weights."""
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._loss(x, y, y_pred, sample_weight, training=True)
            scaled = self._scale(loss)
        return loss, y_pred, tape.gradient(scaled, self.trainable_weights)

    # --------------------------------------------------------------------------- methods
    def _fgm_step(self, settings, embeddings, x, y, sample_weight):
        gradient = self._embedding_gradient(embeddings, x, y, sample_weight, training=False)
        backup = _perturb(embeddings, _normalized(gradient, settings.epsilon))
        loss, y_pred, gradients = self._gradients(x, y, sample_weight)
        _restore(embeddings, backup)
        return loss, y, y_pred, gradients

    def _gradient_penalty_step(self, settings, embeddings, x, y, sample_weight):
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch(_tf_variable(embeddings))
                y_pred = self(x, training=True)
                loss = self._loss(x, y, y_pred, sample_weight, training=True)
                scaled = self._scale(loss)
            gradient = inner.gradient(scaled, _tf_variable(embeddings))
            if gradient is None:
                raise ValueError('the loss does not depend on the embedding matrix %r' % embeddings.path)
            rows = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
            # rows of ∂(global batch mean)/∂E, as bert4keras penalised them: only the loss scale is undone
            # (a replica's loss is its share of the global mean, so its rows are already (1/B)·∂L_b/∂e)
            rows = tf.cast(rows, 'float32') / self._loss_scale()
            penalty = 0.5 * settings.epsilon * tf.reduce_sum(tf.square(rows))
            total = tf.cast(loss, 'float32') + penalty
            scaled_total = self._scale(total)
        return total, y, y_pred, tape.gradient(scaled_total, self.trainable_weights)

    def _vat_step(self, settings, embeddings, x, sample_weight):
        targets = tf.nest.map_structure(tf.stop_gradient, self(x, training=False))
        # same noise on every replica: drawn from (seed, step), not from per-device random state
        seed = tf.stack([tf.constant(settings.seed, 'int64'), tf.cast(self.optimizer.iterations, 'int64')])
        direction = tf.random.stateless_normal(tuple(embeddings.shape), seed=seed, dtype='float32')
        for _ in range(settings.iters):
            backup = _perturb(embeddings, _normalized(direction, settings.xi))
            direction = self._embedding_gradient(embeddings, x, targets, sample_weight, training=False)
            _restore(embeddings, backup)
        backup = _perturb(embeddings, _normalized(direction, settings.epsilon))
        loss, y_pred, gradients = self._gradients(x, targets, sample_weight)
        _restore(embeddings, backup)
        return loss, targets, y_pred, gradients

    # --------------------------------------------------------------------------- Keras hooks
    def train_step(self, data):
        settings = self._adversarial_settings()
        embeddings = settings.embeddings
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if settings.method == 'fgm':
            loss, y, y_pred, gradients = self._fgm_step(settings, embeddings, x, y, sample_weight)
        elif settings.method == 'gradient_penalty':
            loss, y, y_pred, gradients = self._gradient_penalty_step(settings, embeddings, x, y, sample_weight)
        else:
            loss, y, y_pred, gradients = self._vat_step(settings, embeddings, x, sample_weight)
        tracker = _tf_private.model_loss_tracker(self)
        if tracker is not None:
            # per-replica losses are divided by the replica count for summing; report the global mean
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            tracker.update_state(tf.cast(loss, 'float32') * replicas, sample_weight=tf.shape(_first_tensor(x))[0])
        self.optimizer.apply(gradients, self.trainable_weights)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config[_CONFIG_KEY] = self._adversarial_settings().to_config()
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        settings = config.pop(_CONFIG_KEY, None)
        model = cls._adversarial_base.from_config(config, custom_objects=custom_objects)
        if settings is not None:
            _hook(model, _Settings(**settings))
        return model


def _first_tensor(x):
    """The first tensor of a (nested) input structure: its leading dimension is the batch size."""
    return next(t for t in tf.nest.flatten(x) if t is not None)


_CLASSES = {}


def _adversarial_class(base):
    """`AdversarialModel` + `base`, made once per base class and registered as 'Adversarial<Base>'."""
    if base not in _CLASSES:
        name = 'Adversarial' + base.__name__
        cls = type(name, (AdversarialModel, base), {'_adversarial_base': base, '__module__': __name__,
                                                   '__doc__': AdversarialModel.__doc__})
        keras.saving.register_keras_serializable(package=_PACKAGE, name=name)(cls)
        _CLASSES[base] = cls
    return _CLASSES[base]


def _hook(model, settings):
    if not isinstance(model, keras.Model):
        raise TypeError('expected a keras.Model, got %r' % (model,))
    layer = search_layer(model, settings.embedding_name)
    if layer is None:
        names = [layer.name for layer in model.layers][:20]
        raise ValueError('no layer named %r in model %r (nested models searched too); top-level layers: %s'
                         % (settings.embedding_name, model.name, names))
    embeddings = getattr(layer, 'embeddings', None)
    if embeddings is None:
        raise ValueError('layer %r has no `embeddings` matrix (is it an Embedding layer, and built?)'
                         % settings.embedding_name)
    settings.embeddings = embeddings
    base = type(model)._adversarial_base if isinstance(model, AdversarialModel) else type(model)
    model.__class__ = _adversarial_class(base)
    object.__setattr__(model, '_b4k_adversarial', settings)
    model.train_function = None  # re-trace fit's step with the new train_step
    return model


def _check_epsilon(epsilon, name='epsilon'):
    if not isinstance(epsilon, numbers.Real) or not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError('%s must be a finite number >= 0, got %r' % (name, epsilon))


# ---------------------------------------------------------------------------------------------------
# Public API (bert4keras names)
# ---------------------------------------------------------------------------------------------------
def adversarial_training(model, embedding_name='Embedding-Token', epsilon=1, method='fgm'):
    """Make `model` train adversarially on its embedding matrix (in place; returns `model`).

    Args:
        model: a keras.Model (functional, as built by `build_transformer_model` + a head), compiled or
            not; the embedding layer may sit in a nested model.
        embedding_name: name of the Embedding layer whose matrix is perturbed ('Embedding-Token').
        epsilon: perturbation size (FGM) or penalty weight (gradient penalty); bert4keras' examples
            use 0.5 (FGM) and 1 (gradient penalty).
        method: 'fgm' (default) or 'gradient_penalty'.
    """
    if method not in ('fgm', 'gradient_penalty'):
        raise ValueError("method must be 'fgm' or 'gradient_penalty', got %r (for VAT use "
                         "virtual_adversarial_training)" % (method,))
    _check_epsilon(epsilon)
    return _hook(model, _Settings(method, embedding_name, epsilon))


def gradient_penalty_training(model, embedding_name='Embedding-Token', epsilon=1):
    """`adversarial_training(model, embedding_name, epsilon, method='gradient_penalty')`."""
    return adversarial_training(model, embedding_name, epsilon, method='gradient_penalty')


def virtual_adversarial_training(model, embedding_name='Embedding-Token', epsilon=1, xi=10, iters=1, seed=None):
    """Make `model` train by virtual adversarial training (in place; returns `model`).

    Compile `model` with a divergence loss (e.g. ``loss='kld'``): its targets are replaced by its own
    predictions, so it can be fitted on unlabeled inputs (any labels given are ignored). `iters=0`
    trains with Gaussian noise of norm `epsilon` on E. The noise is drawn from `seed` (a random one
    when None, recorded in the config) and the optimizer's step, so a replica-consistent direction is
    used under tf.distribute.
    """
    _check_epsilon(epsilon)
    _check_epsilon(xi, 'xi')
    if int(iters) != iters or iters < 0:
        raise ValueError('iters must be an integer >= 0, got %r' % (iters,))
    if seed is None:
        seed = int(np.random.randint(0, 2 ** 31 - 1))
    return _hook(model, _Settings('vat', embedding_name, epsilon, xi=xi, iters=iters, seed=int(seed)))


def remove_adversarial_training(model):
    """Undo the hook: `model` trains normally again (in place; returns `model`)."""
    if isinstance(model, AdversarialModel):
        model.__class__ = type(model)._adversarial_base
        model.__dict__.pop('_b4k_adversarial', None)
        model.train_function = None
    return model
