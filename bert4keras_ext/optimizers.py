"""bert4keras' derived optimizers on the Keras 3 optimizer API.

Each ``extend_with_*(BaseOptimizer, name=None)`` returns a new optimizer **class**, a subclass of
``BaseOptimizer`` (any `keras.optimizers.Optimizer` subclass: `keras.optimizers.Adam`, this module's
bert4keras-style `Adam`, or a class returned by another ``extend_with_*``), so the extensions stack::

    AdamWLR = extend_with_piecewise_linear_lr(extend_with_weight_decay(Adam), name='AdamWLR')
    optimizer = AdamWLR(learning_rate=2e-5, weight_decay_rate=0.01,
                        exclude_from_weight_decay=['Norm', 'bias'], lr_schedule={1000: 1, 2000: 0.1})

No Keras function is patched: the extensions live in ``build`` / ``update_step`` / ``learning_rate`` of
the derived class, and Keras' own mechanisms are used where they give bert4keras' arithmetic:

=================================  ==================================================================
extension                          implemented with
=================================  ==================================================================
gradient accumulation              Keras' ``gradient_accumulation_steps`` (mean of k micro-batch
                                   gradients, one update per k calls; ``iterations`` counts updates)
piecewise linear learning rate     a multiplier on Keras' learning rate (a float *or* any
                                   ``LearningRateSchedule``), driven by the update counter
weight decay, layer adaptation,    written here, in ``update_step`` around the base update (Keras'
lazy rows, parameter-wise lr,      ``weight_decay`` decays *before* the step, which LAMB's trust
lookahead, EMA with apply/reset    ratio must not see; see below)
=================================  ==================================================================

One update of a variable θ, with lr the scheduled rate (as bert4keras' tf.keras ``_decayed_lr``):

1. learning rate = Keras' rate × piecewise-linear multiplier (``lr_schedule``) at the update count;
2. the base optimizer's step from θ to θ' (e.g. Adam's θ' = θ − lr·m̂/(√v̂+ε)) with the mean accumulated
   gradient;
3. the *update transforms*, applied to θ' **in the order the classes were nested, innermost first** —
   exactly like bert4keras, where each extension intercepts the base optimizer's ``K.update(θ, θ')``:

   * weight decay: θ' ← θ' − lr·λ·θ (non-excluded variables);
   * layer adaptation (LAMB's trust ratio): Δ = θ' − θ, θ' ← θ + Δ·‖θ‖/‖Δ/lr‖ (1 if either norm is 0);
   * parameter-wise learning rate: θ' ← θ + (θ' − θ)·Π{value : key ⊂ variable path};
   * lazy optimisation: rows whose gradient is all zero keep θ (and the base optimizer's slots, e.g.
     Adam's m and v, keep their old rows);

   so ``extend_with_layer_adaptation(extend_with_weight_decay(Adam))`` scales the decayed update
   (LAMB as in the paper and in bert4keras), while ``extend_with_weight_decay(
   extend_with_layer_adaptation(Adam))`` adds the unscaled decay after the trust-ratio step;
4. lookahead: Φ starts as θ₀, the weights entering the first update; after every
   ``steps_per_slow_update`` updates, Φ ← Φ + α(θ' − Φ), θ' ← Φ;
5. exponential moving average: e ← μe + (1 − μ)θ'.

Steps 4 and 5 come last whatever the nesting (in bert4keras, an extension wrapped *around* lookahead
also intercepted lookahead's copy θ ← Φ, e.g. decaying twice per step). Steps 3–4 hold one extra copy of
the variable being updated (one variable at a time), lazy optimisation one copy of each of its slots;
variables no stage touches are updated by the base optimizer alone.

Differences from bert4keras, on purpose: ``iterations`` counts real updates under gradient
accumulation (bert4keras counted micro-batches, so its schedules, Adam bias correction and lookahead
periods ran k times too fast, and its first step applied a zero gradient); weight decay runs once per
real update whatever the nesting (bert4keras decayed on every micro-batch when weight decay wrapped
gradient accumulation); lookahead's slow weights start as the weights θ₀ and synchronise after updates
k, 2k, … (bert4keras started them at zero and synchronised at updates 1, k + 1, …, which shrank θ by α
at the first update); lazy optimisation also freezes the slots of unseen rows (bert4keras froze only the
variable, so Adam's momentum kept moving unseen embedding rows once the mask lifted); the EMA of an
embedding with a sparse gradient advances once per update (bert4keras advanced it twice).

The rest of bert4keras' optimizers module is here too: `AdaFactor` (= ``AdaFactorV1`` = ``AdaFactorV2``,
on `AdaFactorBase`) and `Lion` (= ``LionV2``) from `optimizers_extra`; every ``extend_with_X_v2`` (the
same function as ``extend_with_X``: Keras 3 has one optimizer API); `export_to_custom_objects`;
`custom_objects`; and the helpers it imported (``is_string``, ``string_matching``, ``is_one_of``,
``insert_arguments``, ``piecewise_linear``, ``rms``, ``is_tf_keras``). bert4keras' `Adam` also takes
Keras 2's ``lr=``.

Saving: every class made here is registered with Keras under ``'bert4keras_ext>' + name``; ``name``
defaults to a deterministic ``'<Base>_<Extension>'``, Keras' own optimizers prefixed with ``Keras``:
``extend_with_lookahead(extend_with_weight_decay(Adam))`` is ``'Adam_WeightDecay_Lookahead'`` for this
module's Adam and ``'KerasAdam_WeightDecay_Lookahead'`` for ``keras.optimizers.Adam``.
``model.save('m.keras')`` stores that name; to load in a new process, run the same ``extend_with_*``
calls (same names) before ``keras.saving.load_model`` — importing the module of the training script
that defines them is enough — or pass the class under its registered name,
``custom_objects={'bert4keras_ext>Adam_WeightDecay_Lookahead': TheClass}``.
Calling a factory twice with the same base and name returns the same class.

Mixed precision: wrap any of these in ``keras.optimizers.LossScaleOptimizer`` (``compile`` does it for
``mixed_float16``); the EMA methods then live on ``optimizer.inner_optimizer``. Under
``tf.distribute`` build the optimizer inside ``strategy.scope()`` like the model.
"""
from bert4keras_ext.backend import is_tf_keras, piecewise_linear, root_mean_square as rms
from bert4keras_ext.misc import insert_arguments, is_one_of
from bert4keras_ext.optimizers_extra import AdaFactor, AdaFactorBase, AdaFactorV1, AdaFactorV2, Lion, LionV2
from bert4keras_ext.text_utils import is_string, string_matching
from bert4keras_ext.training.adam import Adam
# _CLASS_CACHE: the factories' class cache (tests forget registered classes through it)
from bert4keras_ext.training.derived_optimizer import _CLASS_CACHE, DerivedOptimizer  # noqa: F401
from bert4keras_ext.training.optimizer_compat import (
    custom_objects, export_to_custom_objects, extend_with_exponential_moving_average_v2,
    extend_with_gradient_accumulation_v2, extend_with_layer_adaptation_v2, extend_with_lazy_optimization_v2,
    extend_with_lookahead_v2, extend_with_parameter_wise_lr_v2, extend_with_piecewise_linear_lr_v2,
    extend_with_weight_decay_v2,
)
from bert4keras_ext.training.optimizer_extensions import (
    AdamEMA, AdamW, extend_with_exponential_moving_average, extend_with_gradient_accumulation,
    extend_with_layer_adaptation, extend_with_lazy_optimization, extend_with_lookahead,
    extend_with_parameter_wise_lr, extend_with_piecewise_linear_lr, extend_with_weight_decay,
)

__all__ = [
    'Adam', 'AdamW', 'AdamEMA', 'DerivedOptimizer', 'extend_with_weight_decay', 'extend_with_layer_adaptation',
    'extend_with_piecewise_linear_lr', 'extend_with_gradient_accumulation', 'extend_with_lookahead',
    'extend_with_lazy_optimization', 'extend_with_exponential_moving_average', 'extend_with_parameter_wise_lr',
    # bert4keras' other public names (training/optimizer_compat.py and the helpers it imported)
    'AdaFactor', 'AdaFactorBase', 'AdaFactorV1', 'AdaFactorV2', 'Lion', 'LionV2', 'custom_objects',
    'export_to_custom_objects', 'extend_with_weight_decay_v2', 'extend_with_layer_adaptation_v2',
    'extend_with_piecewise_linear_lr_v2', 'extend_with_gradient_accumulation_v2', 'extend_with_lookahead_v2',
    'extend_with_lazy_optimization_v2', 'extend_with_exponential_moving_average_v2',
    'extend_with_parameter_wise_lr_v2', 'insert_arguments', 'is_one_of', 'is_string', 'is_tf_keras',
    'piecewise_linear', 'rms', 'string_matching',
]
