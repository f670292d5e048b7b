"""Training tools by role. The derived optimizers of `bert4keras_ext.optimizers` (the bert4keras import path,
which re-exports them and documents the order of an update): `adam` (bert4keras' fused Adam),
`derived_optimizer` (the `DerivedOptimizer` mixin: build-time settings per variable, the update order, class
naming and registration), `optimizer_extensions` (the ``extend_with_*`` factories, `AdamW`, `AdamEMA`),
`optimizer_compat` (the rest of bert4keras' optimizers module: ``_v2`` aliases, `export_to_custom_objects`,
`custom_objects`), `optimizer_helpers` (small tensor helpers they share)."""
