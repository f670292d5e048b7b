"""`export_generator`: greedy search, sampling and beam search run in the graph of a SavedModel.

Two tiny models are exported — a UniLM with segment ids (no start_id) and an LM without a segment input
(start_id and minlen=3) — and ONE fresh interpreter that cannot import `bert4keras_ext` (`python -I`, an
import hook that makes the import fail, as tests/test_export.py) loads both with `tf.saved_model.load` and
runs every signature on a right-padded batch of sources of different lengths. The answers must equal, row
by row, what `CachedDecoder` (the Python-driven search) returns for each source alone: greedy =
`beam_search(topk=1)`, beam search = `beam_search(topk=k)` with the same scores. Samples are checked by
their properties against the full Keras model and a numpy top-k / top-p written here: only allowed
tokens, the same draws for the same seed, topk=1 and temperature=0 equal greedy. Bad arguments fail
with messages that say what was wrong, before export (Python) and at serving time (graph assertions).
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

from bert4keras_ext.export_generation import GraphGenerator, export_generator
from bert4keras_ext.generation import CachedDecoder
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.snippets import sequence_padding

VOCAB, END, MAXLEN = 60, 3, 8
SIZES = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             max_position=64)
SOURCES = [list(map(int, np.random.RandomState(0).randint(4, VOCAB, size=n))) for n in (5, 2, 9, 3, 6, 1)]
CASES = {
    # name: (build kwargs (+ the end token's output bias), export kwargs, signatures)
    'unilm': (dict(application='unilm', end_bias=1.5), dict(end_id=END, maxlen=MAXLEN),
              ('greedy', 'sample', 'beam_search')),
    'lm': (dict(application='lm', segment_vocab_size=0, end_bias=3.0, num_hidden_layers=2),
           dict(end_id=END, maxlen=MAXLEN, start_id=2, minlen=3), ('greedy', 'beam_search')),
}
SAMPLE_SETTINGS = {  # name: (topk, topp, temperature, seed)
    'filtered': (5, 0.8, 1.0, 11), 'filtered_again': (5, 0.8, 1.0, 11), 'other_seed': (0, 1.0, 1.0, 12),
    'same_seed_unfiltered': (0, 1.0, 1.0, 11), 'hot': (8, 0.95, 1.5, 3), 'topk1': (1, 1.0, 1.0, 5),
    'temperature0': (0, 1.0, 0.0, 5),
}


def _model(end_bias=1.5, **kwargs):
    """A tiny random model whose outputs depend on the source and end at different steps: unit-norm
    token embeddings (scaled) so no row dominates the tied output layer, a random output bias, [PAD]
    and id 1 never likely, and an end-token bias that makes some outputs end early."""
    keras.utils.set_random_seed(0)
    transformer = build_transformer_model(model='bert', return_keras_model=False, **dict(SIZES, **kwargs))
    rng = np.random.RandomState(0)
    table = rng.randn(VOCAB, SIZES['hidden_size'])
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    transformer.layers['Embedding-Token'].set_weights([(2 * table).astype('float32')])
    bias = (0.3 * rng.randn(VOCAB)).astype('float32')
    bias[:2], bias[END] = -10, end_bias
    transformer.layers['MLM-Bias'].set_weights([bias])
    return transformer


CHECK = HIDE_PACKAGE + textwrap.dedent(r'''

    def plain(outputs):
        return {key: value.numpy().tolist() for key, value in outputs.items()}

    def error_of(call):
        try:
            call()
        except tf.errors.InvalidArgumentError as error:
            return error.message
        return None

    results = {}
    for line in sys.stdin:  # one exported case per line, as the test process writes them
        case = line.strip()
        loaded = tf.saved_model.load(case)
        data = np.load(case + '.npz')
        ids = [tf.constant(data['token_ids'], tf.int32)]
        if 'segment_ids' in data:
            ids.append(tf.constant(data['segment_ids'], tf.int32))
        entry = results[case] = {'signatures': sorted(loaded.signatures)}
        entry['greedy'] = plain(loaded.greedy(*ids))
        # what TF Serving calls: the signature, named inputs
        named = dict(zip(('token_ids', 'segment_ids'), ids))
        entry['serving_default'] = plain(loaded.signatures['serving_default'](**named))
        entry['signature_inputs'] = {name: sorted(loaded.signatures[name].structured_input_signature[1])
                                     for name in loaded.signatures}
        for k in (1, 3):
            entry['beam%d' % k] = plain(loaded.beam_search(*ids, tf.constant(k)))
        entry['beam_by_signature'] = plain(loaded.signatures['beam_search'](**named, topk=tf.constant(3)))
        entry['errors'] = {
            'beam_width': error_of(lambda: loaded.beam_search(*ids, tf.constant(0))),
            'left_padded': error_of(lambda: loaded.greedy(*[tf.reverse(t, [1]) for t in ids])),
            'empty_row': error_of(lambda: loaded.greedy(*[t * tf.constant([[0]] + [[1]] * (t.shape[0] - 1))
                                                          for t in ids])),
            'too_long': error_of(lambda: loaded.greedy(*[tf.ones((1, 60), tf.int32) * 7 for _ in ids])),
        }
        if hasattr(loaded, 'sample'):
            settings = json.loads(str(data['sample_settings']))
            entry['samples'] = {
                name: plain(loaded.sample(*ids, tf.constant(topk), tf.constant(topp, tf.float32),
                                          tf.constant(temperature, tf.float32), tf.constant(seed, tf.int64)))
                for name, (topk, topp, temperature, seed) in settings.items()}
            def bad_sample(topk=0, topp=1.0, temperature=1.0):
                return lambda: loaded.sample(*ids, tf.constant(topk), tf.constant(topp, tf.float32),
                                             tf.constant(temperature, tf.float32), tf.constant(0, tf.int64))
            entry['errors'].update(topk=error_of(bad_sample(topk=-1)), topp=error_of(bad_sample(topp=0.0)),
                                   temperature=error_of(bad_sample(temperature=-1.0)),
                                   topp_nan=error_of(bad_sample(topp=float('nan'))))
    results['__imported__'] = sorted(m for m in sys.modules if m.split('.')[0] == 'bert4keras_ext')
    results['__attempts__'] = Forbid.attempts
    print('RESULTS ' + json.dumps(results))
''')


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """Export both cases and compute CachedDecoder's answers here while ONE clean subprocess (started
    first, so its TensorFlow import overlaps the exports) loads and runs each export."""
    root = tmp_path_factory.mktemp('generation_exports')
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'PYTHONSTARTUP')}
    env.update(TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='-1')
    proc = subprocess.Popen([sys.executable, '-I', '-c', CHECK], cwd=str(root), env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    local = {}
    try:
        for case, (build, settings, signatures) in CASES.items():
            transformer = _model(**build)
            export_generator(transformer, str(root / case), signatures=signatures, **settings)
            token_ids = sequence_padding(SOURCES)
            arrays = {'token_ids': token_ids, 'sample_settings': json.dumps(SAMPLE_SETTINGS)}
            if 'segment_vocab_size' not in build:
                arrays['segment_ids'] = np.zeros_like(token_ids)
            np.savez(str(root / (case + '.npz')), **arrays)
            proc.stdin.write(case + '\n')
            proc.stdin.flush()
            decoder = CachedDecoder(transformer, jit_compile=False, **settings)
            inputs = [[s, [0] * len(s)] if 'segment_ids' in arrays else [s] for s in SOURCES]
            local[case] = {'transformer': transformer, 'settings': settings, 'ops': _graph_ops(root / case),
                           'beam': {k: decoder.beam_search_batch(inputs, topk=k, return_info=True) for k in (1, 3)}}
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail('the clean loader process did not finish in 240 s')
    except BrokenPipeError:
        pytest.fail('the clean loader process exited early:\n' + proc.communicate()[1][-5000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith('RESULTS ')]
    assert proc.returncode == 0 and lines, 'the clean loader process failed:\n' + stdout[-3000:] + stderr[-5000:]
    return json.loads(lines[-1][len('RESULTS '):]), local


def _graph_ops(path):
    """The op types of every graph and function of a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2
    model = saved_model_pb2.SavedModel()
    with open(str(path / 'saved_model.pb'), 'rb') as f:
        model.ParseFromString(f.read())
    ops = set()
    for meta in model.meta_graphs:
        ops.update(node.op for node in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def test_exported_graphs_use_standard_ops_only(served):
    """No XLA-only op (TF Serving's CPU build runs them only with XLA compilation on, its GPU build not at
    all): the cache slots are written with pad / roll / select (`caching.write_slots(portable=True)`)."""
    _, local = served
    for case, entry in local.items():
        assert 'Where' in entry['ops'] or 'SelectV2' in entry['ops'], case
        assert not [op for op in entry['ops'] if op.startswith('Xla')], (case, sorted(entry['ops']))


def _rows(outputs):
    """[(ids, finished)] of a signature's answer, each row cut at its length."""
    return [(ids[:length], finished) for ids, length, finished in
            zip(outputs['output_ids'], outputs['lengths'], outputs['finished'])]


def test_loader_process_never_imported_the_package(served):
    results, _ = served
    assert results['__attempts__'] == [] and results['__imported__'] == [], results


def test_signatures_and_their_inputs(served):
    results, _ = served
    unilm, lm = results['unilm'], results['lm']
    assert unilm['signatures'] == ['beam_search', 'greedy', 'sample', 'serving_default']
    assert unilm['signature_inputs']['sample'] == ['seed', 'segment_ids', 'temperature', 'token_ids', 'topk',
                                                   'topp']
    assert unilm['signature_inputs']['beam_search'] == ['segment_ids', 'token_ids', 'topk']
    assert unilm['serving_default'] == unilm['greedy']
    # a model without a segment input takes token ids only
    assert lm['signatures'] == ['beam_search', 'greedy', 'serving_default']
    assert lm['signature_inputs']['greedy'] == ['token_ids']


@pytest.mark.parametrize('case', sorted(CASES))
def test_greedy_equals_cached_beam_search_with_topk_1(served, case):
    results, local = served
    expected = [(list(map(int, ids)), info['finished']) for ids, info in local[case]['beam'][1]]
    got = _rows(results[case]['greedy'])
    assert got == expected
    # the batch is meaningful: some outputs end early, some run to maxlen
    finished = [f for _, f in expected]
    assert any(finished) and not all(finished)
    output_ids = np.array(results[case]['greedy']['output_ids'])
    lengths = np.array(results[case]['greedy']['lengths'])
    assert output_ids.shape[1] == lengths.max()
    assert (output_ids[np.arange(output_ids.shape[1])[None] >= lengths[:, None]] == 0).all()  # 0 after the end


@pytest.mark.parametrize('case', sorted(CASES))
def test_beam_search_equals_cached_beam_search(served, case):
    results, local = served
    for k in (1, 3):
        got = results[case]['beam%d' % k]
        expected = local[case]['beam'][k]
        assert _rows(got) == [(list(map(int, ids)), info['finished']) for ids, info in expected], k
        assert np.allclose(got['scores'], [info['score'] for _, info in expected], atol=1e-4), k
    assert results[case]['beam_by_signature'] == results[case]['beam3']
    # a width-3 beam finds other outputs than greedy search for some source
    assert [list(ids) for ids, _ in local[case]['beam'][3]] != [list(ids) for ids, _ in local[case]['beam'][1]]


def test_lm_outputs_start_with_start_id_and_respect_minlen(served):
    results, _ = served
    for name in ('greedy', 'beam1', 'beam3'):
        for ids, finished in _rows(results['lm'][name]):
            assert ids[0] == 2
            assert len(ids) >= 3 and END not in ids[:2]


def _allowed(probs, topk, topp):
    """numpy top-k then top-p (stable descending sort: probability, then the lowest id)."""
    order = np.argsort(-probs, kind='stable')
    ranked = probs[order]
    keep = np.arange(len(probs)) < (topk or len(probs))
    top = np.where(keep, ranked, 0) / np.where(keep, ranked, 0).sum()
    keep &= np.concatenate([[0], np.cumsum(top)[:-1]]) < topp
    return set(order[keep].tolist()), ranked


def test_samples_only_take_allowed_tokens(served):
    """Every sampled token is in the top-k / top-p set of the full Keras model's distribution (at the
    sample's temperature) after the source and the tokens sampled before it."""
    results, local = served
    model = local['unilm']['transformer'].model
    checked = 0
    for name, (topk, topp, temperature, _) in SAMPLE_SETTINGS.items():
        if temperature == 0:
            continue
        for source, (ids, finished) in zip(SOURCES, _rows(results['unilm']['samples'][name])):
            assert 1 <= len(ids) <= MAXLEN and finished == (ids[-1] == END)
            assert END not in ids[:-1]
            tokens = np.array([source + ids], 'float32')
            segments = np.array([[0] * len(source) + [1] * len(ids)], 'float32')
            probs = np.asarray(model([tokens, segments], training=False), 'float64')[0]
            for t, token in enumerate(ids):
                logp = np.log(probs[len(source) + t - 1]) / temperature
                p = np.exp(logp - logp.max())
                allowed, ranked = _allowed(p / p.sum(), topk, topp)
                assert token in allowed, (name, source, ids, t)
                checked += 1
    assert checked > 50


def test_sampling_determinism_and_greedy_limits(served):
    results, _ = served
    samples = results['unilm']['samples']
    assert samples['filtered'] == samples['filtered_again']
    assert samples['other_seed'] != samples['same_seed_unfiltered']
    assert samples['filtered'] != samples['same_seed_unfiltered']  # the filters change what is drawn
    greedy = results['unilm']['greedy']
    assert samples['topk1'] == greedy and samples['temperature0'] == greedy


def test_graph_assertions_name_the_bad_argument(served):
    results, _ = served
    errors = results['unilm']['errors']
    assert 'topk must be >= 0' in errors['topk']
    assert 'topp must be a finite number > 0' in errors['topp']
    assert 'temperature must be a finite number >= 0' in errors['temperature']
    assert 'topp must be a finite number > 0' in errors['topp_nan']
    for case in CASES:
        errors = results[case]['errors']
        assert 'beam width' in errors['beam_width']
        assert 'right-padded' in errors['left_padded']
        assert 'at least one token' in errors['empty_row']
        assert 'position table' in errors['too_long']


def test_bad_export_arguments_raise_before_export(tmp_path):
    unilm = _model(application='unilm')
    for kwargs, message in [
        (dict(end_id=END, maxlen=0), 'maxlen must be an integer >= 1'),
        (dict(end_id=VOCAB, maxlen=4), 'end_id=60 is outside the model vocabulary'),
        (dict(end_id=END, maxlen=4, start_id=-1), 'start_id must be an integer >= 0'),
        (dict(end_id=END, maxlen=64), 'leaves no room for a source'),
        (dict(end_id=END, maxlen=4, min_ends=0), 'min_ends must be an integer >= 1'),
    ]:
        with pytest.raises(ValueError, match=message):
            GraphGenerator(unilm, **kwargs)
    with pytest.raises(ValueError, match='signatures must be distinct names'):
        export_generator(unilm, str(tmp_path / 'x'), END, 4, signatures=('greedy', 'top_k'))
    encoder = build_transformer_model(model='bert', return_keras_model=False, **SIZES)
    with pytest.raises(ValueError, match='MLM head'):
        GraphGenerator(encoder, END, 4)
    assert not os.path.exists(str(tmp_path / 'x'))
