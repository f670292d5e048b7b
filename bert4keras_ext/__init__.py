"""bert4keras_ext: the bert4keras way of doing Chinese NLP, on Keras 3 + TensorFlow.

The public surface mirrors bert4keras::

    from bert4keras_ext.backend import keras, K
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.tokenizers import Tokenizer, load_vocab
    from bert4keras_ext.snippets import sequence_padding, DataGenerator

Importing the package itself is cheap: submodules load TensorFlow only when imported.

Importing it before TensorFlow also switches on TensorFlow's oneDNN kernels on x86-64 CPUs, where
TensorFlow leaves them off unless the CPU has AVX-512 (as on the AMD EPYC machines this project is
measured on). With them, BERT-base fine-tuning ran 19-25% and inference 3-17% faster here
(docs/performance.md).
The variable TensorFlow reads is ``TF_ENABLE_ONEDNN_OPTS``: a value you set yourself wins (``=0`` keeps
TensorFlow's own kernels), and nothing changes if TensorFlow was imported first, since it reads the
variable once, at import. `bert4keras_ext.backend.onednn_enabled()` tells which kernels are in use.
"""
import os as _os
import platform as _platform
import sys as _sys

__version__ = '0.1.0'


def _prefer_onednn_kernels():
    """Set TF_ENABLE_ONEDNN_OPTS=1 if TensorFlow is not loaded yet, the user has not chosen, and the CPU is x86-64.

    Chosen by measurement (benchmarks/bench_bert.py in interleaved pairs, 2-core AVX2 AMD EPYC, TensorFlow
    2.21): 2048³ matmul 118 → 156 GFLOP/s, BERT-base 16 × 128 fine-tuning step +19-25%, inference +3-17%,
    beam-search decoding 12.8 → 14.9 tokens/s. Other architectures keep TensorFlow's default.
    """
    if 'tensorflow' in _sys.modules or 'TF_ENABLE_ONEDNN_OPTS' in _os.environ:
        return
    if _platform.machine().lower() in ('x86_64', 'amd64'):
        _os.environ['TF_ENABLE_ONEDNN_OPTS'] = '1'


_prefer_onednn_kernels()
