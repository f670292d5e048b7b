"""`model.export(path)` (Keras 3) writes a SavedModel that answers without this package.

Every model family in `bert4keras_ext.models.MODELS` (as an encoder, and as a UniLM seq2seq model with
the MLM head), the causal LM, a [CLS] classifier, a CRF tagger (emissions, and Viterbi tags through an
extra `decode` endpoint), GlobalPointer and EfficientGlobalPointer are built tiny and random, exported,
and their outputs (`model(x, training=False)`, which is what `model.predict` runs)
recorded here. Then ONE fresh interpreter that imports only
TensorFlow (`python -I`, run from the export folder, with an import hook that makes importing
`bert4keras_ext` fail) loads every SavedModel with `tf.saved_model.load` and calls both the `serve`
endpoint and the `serving_default` signature (what TF Serving calls); the answers must equal the
in-process outputs to 1e-5. See docs/serving.md.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from clean_process import HIDE_PACKAGE

import keras
import tensorflow as tf

from bert4keras_ext.heads import ConditionalRandomField, EfficientGlobalPointer, GlobalPointer
from bert4keras_ext.layers import ExtractToken
from bert4keras_ext.models import MODELS, build_transformer_model

SIZES = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
             max_position=16, dropout_rate=0.1, attention_dropout_rate=0.1)
TOLERANCE = 1e-5
# one case per model class: names that share a class ('roberta', 'wobert' are BERT) build the same graph
FAMILIES = {}
for _name in sorted(MODELS):
    FAMILIES.setdefault(MODELS[_name], _name)
FAMILIES = sorted(FAMILIES.values())


def _ids(batch, length, seed):
    """Token ids [CLS]=2 ... with right padding (rows of different lengths) and segment ids 0/1."""
    rng = np.random.RandomState(seed)
    tokens = rng.randint(5, SIZES['vocab_size'], (batch, length))
    tokens[:, 0] = 2
    lengths = np.linspace(length, 2, batch).astype(int)
    tokens[np.arange(length)[None] >= lengths[:, None]] = 0
    segments = ((np.arange(length)[None] >= lengths[:, None] // 2) & (tokens > 0)).astype(int)
    return tokens, segments


# two shapes: the SavedModel must keep batch and length dynamic
INPUTS = [_ids(3, 7, 0), _ids(2, 11, 1)]


def _backbone(family='bert', application='encoder', **kwargs):
    return build_transformer_model(model=family, application=application, **dict(SIZES, **kwargs))


def _classifier():
    bert = _backbone()
    return keras.Model(bert.inputs, keras.layers.Dense(3, activation='softmax')(ExtractToken(0)(bert.output)))


def _crf_tagger():
    keras.utils.set_random_seed(0)
    bert = _backbone()
    crf = ConditionalRandomField(lr_multiplier=10, name='CRF')
    model = keras.Model(bert.inputs, crf(keras.layers.Dense(4, name='Emissions')(bert.output)))
    # a non-trivial transition matrix, so that Viterbi differs from the argmax of the emissions
    crf._trans.assign(np.random.RandomState(3).randn(4, 4).astype('float32') / 10)
    return model


def _pointer(layer_class):
    def make():
        bert = _backbone()
        return keras.Model(bert.inputs, layer_class(heads=2, head_size=4)(bert.output))
    return make


# The heads each family has, on top of its UniLM: pooler + MLM where the release has them; RoFormer-v2 has
# no pooler; ELECTRA has no token head but its replaced-token discriminator.
FAMILY_HEADS = {'roformer_v2': {}, 'electra': {'with_mlm': False, 'with_discriminator': True}}

CASES = {}
for _family in FAMILIES:
    CASES['encoder-' + _family] = lambda family=_family: _backbone(family)
    CASES['unilm_mlm-' + _family] = lambda family=_family: _backbone(
        family, 'unilm', **FAMILY_HEADS.get(family, {'with_pool': True}))
CASES.update({
    'lm-bert': lambda: _backbone('bert', 'lm', with_mlm='linear'),
    'classifier': _classifier,
    'crf': _crf_tagger,
    'global_pointer': _pointer(GlobalPointer),
    'efficient_global_pointer': _pointer(EfficientGlobalPointer),
    'int32_ids': lambda: _backbone('bert', with_pool=True),  # exported with an int32 input_signature
})
INT32_SPEC = [[tf.TensorSpec((None, None), tf.int32, name='Input-Token'),
               tf.TensorSpec((None, None), tf.int32, name='Input-Segment')]]


def _as_list(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def _export_crf_with_decode(model, path):
    """'serve' → emissions (as model.export writes), 'decode' → Viterbi tags, computed in the graph."""
    crf = model.get_layer('CRF')
    spec = [tf.TensorSpec((None, None), tf.float32, name=x.name) for x in model.inputs]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint('serve', lambda inputs: model(inputs, training=False), input_signature=[spec])
    archive.add_endpoint('decode', lambda inputs: crf.decode(model(inputs, training=False)), input_signature=[spec])
    archive.write_out(path, verbose=False)
    return lambda x: crf.decode(np.asarray(model(x, training=False)))  # numpy path: XLA-compiled Viterbi


CHECK = HIDE_PACKAGE + textwrap.dedent(r'''

    results = {}
    for line in sys.stdin:  # one exported case per line, as the test process writes them
        case = line.strip()
        loaded = tf.saved_model.load(case)
        signature = loaded.signatures['serving_default']
        entry = results[case] = {'serve': [], 'signature': [], 'decode': []}
        data = np.load(case + '.npz')
        for i in range(int(data['n'])):
            tokens, segments = data['tokens%d' % i], data['segments%d' % i]
            inputs = [tf.constant(tokens, str(data['dtype'])), tf.constant(segments, str(data['dtype']))]
            served = loaded.serve(inputs)
            served = list(served) if isinstance(served, (list, tuple)) else [served]
            # what TF Serving calls: named inputs (the Keras Input names), outputs output_0, output_1, ...
            names = dict(zip(('Token', 'Segment'), inputs))
            named = signature(**{key: names[key.split('_')[-1]] for key in signature.structured_input_signature[1]})
            by_signature = [named['output_%d' % k] for k in range(len(named))]
            for kind, outputs in (('serve', served), ('signature', by_signature)):
                diffs = []
                for k, output in enumerate(outputs):
                    expected = data['expected%d_%d' % (i, k)]
                    diffs.append(float(np.abs(output.numpy() - expected).max()) if output.shape == expected.shape
                                 else 'shape %s, expected %s' % (output.shape, expected.shape))
                if len(outputs) != int(data['outputs']):
                    diffs.append('%d outputs, expected %d' % (len(outputs), int(data['outputs'])))
                entry[kind].append(diffs)
            if hasattr(loaded, 'decode'):
                tags = loaded.decode(inputs).numpy()
                entry['decode'].append(int((tags != data['tags%d' % i]).sum()))
        entry['signature_inputs'] = sorted(signature.structured_input_signature[1])
        entry['signature_dtypes'] = sorted(s.dtype.name for s in signature.structured_input_signature[1].values())
    results['__imported__'] = sorted(m for m in sys.modules if m.split('.')[0] == 'bert4keras_ext')
    results['__attempts__'] = Forbid.attempts
    print('RESULTS ' + json.dumps(results))
''')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Export every case and record the in-process answers, while ONE clean subprocess (started first,
    so that its TensorFlow import and loading overlap the exports) loads and checks each."""
    root = tmp_path_factory.mktemp('exported')
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'PYTHONSTARTUP')}
    env.update(TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='-1')
    # -I: no PYTHONPATH, no current directory or user site on sys.path; cwd = the export folder
    proc = subprocess.Popen([sys.executable, '-I', '-c', CHECK], cwd=str(root), env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for case, make in CASES.items():
            keras.utils.set_random_seed(0)
            model = make()
            path = str(root / case)
            if case == 'crf':
                decode = _export_crf_with_decode(model, path)
            elif case == 'int32_ids':
                model.export(path, verbose=False, input_signature=INT32_SPEC)
                decode = None
            else:
                model.export(path, verbose=False)
                decode = None
            arrays = {'n': len(INPUTS), 'dtype': 'int32' if case == 'int32_ids' else 'float32'}
            for i, (tokens, segments) in enumerate(INPUTS):
                x = [tokens.astype('float32'), segments.astype('float32')]
                # the model's own forward pass (what model.predict runs, without its per-shape retracing)
                expected = _as_list(model(x, training=False))
                arrays.update({'tokens%d' % i: tokens, 'segments%d' % i: segments, 'outputs': len(expected)})
                arrays.update({'expected%d_%d' % (i, k): e for k, e in enumerate(expected)})
                if decode is not None:
                    arrays['tags%d' % i] = np.asarray(decode(x))
            np.savez(str(root / (case + '.npz')), **arrays)
            proc.stdin.write(case + '\n')
            proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail('the clean loader process (tf.saved_model.load of every export) did not finish in 240 s')
    except BrokenPipeError:
        pytest.fail('the clean loader process exited early:\n' + proc.communicate()[1][-5000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith('RESULTS ')]
    assert proc.returncode == 0 and lines, 'the clean loader process failed:\n' + stdout[-3000:] + stderr[-5000:]
    return json.loads(lines[-1][len('RESULTS '):])


def test_loader_process_never_imported_the_package(exported):
    assert exported['__attempts__'] == [] and exported['__imported__'] == [], exported


@pytest.mark.parametrize('case', sorted(CASES))
def test_exported_model_answers_like_predict(exported, case):
    result = exported[case]
    for kind in ('serve', 'signature'):
        assert len(result[kind]) == len(INPUTS), result
        for diffs in result[kind]:
            assert all(isinstance(d, float) and d <= TOLERANCE for d in diffs), (kind, result)
    # Python sees the signature's inputs as Input_Token / Input_Segment (TF Serving as Input-Token, ...)
    assert result['signature_inputs'] == ['Input_Segment', 'Input_Token'], result
    assert set(result['signature_dtypes']) == {'int32' if case == 'int32_ids' else 'float32'}, result


def test_crf_decode_endpoint_returns_viterbi_tags(exported):
    assert exported['crf']['decode'] == [0] * len(INPUTS), exported['crf']


def test_crf_tags_are_viterbi_not_argmax():
    """The CRF case is meaningful: for its inputs, Viterbi tags differ from argmax of the emissions
    somewhere, and equal an exhaustive search over all tag paths (numpy, written here)."""
    import itertools
    keras.utils.set_random_seed(0)
    model = _crf_tagger()
    crf = model.get_layer('CRF')
    trans = np.asarray(crf.trans)
    tokens, segments = INPUTS[0]
    emissions = np.asarray(model([tokens.astype('float32'), segments.astype('float32')], training=False))
    tags = np.asarray(crf.decode(emissions))
    differs = False
    for row in range(len(tokens)):
        n = int((tokens[row] > 0).sum())
        best = max(itertools.product(range(4), repeat=n), key=lambda path: sum(
            emissions[row, t, y] for t, y in enumerate(path)) + sum(trans[a, b] for a, b in zip(path, path[1:])))
        assert list(tags[row, :n]) == list(best)
        differs |= list(best) != list(emissions[row, :n].argmax(-1))
    assert differs
