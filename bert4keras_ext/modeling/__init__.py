"""Model classes by role: `transformer` (the base class and its steps), `bert` (BERT / ALBERT), `applications`
(LM / UniLM masks). `bert4keras_ext.models` is the public facade (`build_transformer_model`, `MODELS`)."""
