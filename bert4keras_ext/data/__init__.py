"""bert4keras' data helpers by role (`bert4keras_ext.snippets` is the bert4keras import path that re-exports
them): `sequences` (padding a batch, splitting long texts, `to_array`, `softmax`), `generator` (`DataGenerator`),
`batches` (how a generator's batches and samples become what Keras 3 and tf.data read). numpy and the standard
library only; TensorFlow is imported inside the methods that build datasets."""
