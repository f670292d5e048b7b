"""Serving a trained model over HTTP: ``python -m bert4keras_ext serve`` (see `cli`).

Modules (each one job; dependencies point down this list):

    batcher    `MicroBatcher`: requests from many threads → one batched call on one worker thread
    predictor  `load_predictor`: a .keras file or SavedModel dir → a function of padded id arrays
    tasks      `ClassifyTask`, `NerTask`, `GenerateTask`: JSON request ↔ batch item ↔ JSON answer
    server     `ModelServer`: ThreadingHTTPServer routes (POST /<task>, GET /health), status codes
    cli        the command's options and `main`

Importing this package does not import TensorFlow.
"""
from bert4keras_ext.serving.batcher import BatcherBusy, BatcherClosed, MicroBatcher  # noqa: E402,F401
from bert4keras_ext.serving.predictor import Predictor, load_predictor  # noqa: E402,F401
from bert4keras_ext.serving.server import ModelServer  # noqa: E402,F401
from bert4keras_ext.serving.tasks import (  # noqa: E402,F401
    ClassifyTask, GenerateTask, NerTask, RequestError, read_labels,
)
