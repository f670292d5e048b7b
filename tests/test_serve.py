"""`python -m bert4keras_ext serve`: answers over HTTP equal the model's own answers, batching, errors.

Tiny random models are built here (the 2-layer BERT checkpoint of conftest), served on a free localhost
port, and hit by concurrent clients (threads + urllib). Every answer is compared with an independent
reference computed directly from the in-memory model on that one input alone (no padding, no batching):
class probabilities; NER entities from an exhaustive search over tag paths (CRF) or from the
GlobalPointer scores > 0, mapped to characters by hand; greedy generation by full recomputation.
"""
import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from bert4keras_ext.serving.batcher import BatcherClosed, MicroBatcher

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARS = '的是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天'
TYPES = ['PER', 'LOC']


def texts(n, seed, low=2, high=9):
    rng = np.random.RandomState(seed)
    return [''.join(rng.choice(list(CHARS), rng.randint(low, high))) for _ in range(n)]


def post(url, payload, raw=None):
    """(status, JSON answer) of a POST; 4xx/5xx answers are returned, not raised."""
    data = raw if raw is not None else json.dumps(payload).encode('utf-8')
    request = urllib.request.Request(url, data=data, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read().decode('utf-8'))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode('utf-8'))


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read().decode('utf-8'))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode('utf-8'))


def direct(model, token_ids, segment_ids):
    """The model's output for one input alone: unpadded, unbatched (an eager call: faster than predict)."""
    return np.asarray(model([np.array([token_ids]), np.array([segment_ids])], training=False))[0]


def post_all(url, payloads, clients=8):
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda p: post(url, p), payloads))


# ------------------------------------------------------------------------------------------ batcher

def test_micro_batcher_batches_and_keeps_order():
    import threading
    import time
    calls = []
    first_started, gate = threading.Event(), threading.Event()

    def run_batch(items):
        calls.append(list(items))
        first_started.set()
        gate.wait(10)  # the first call holds the worker until every other request is queued
        return [x * 10 for x in items]

    batcher = MicroBatcher(run_batch, max_batch=4, max_wait_ms=1)
    batcher.start()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(batcher.submit, i, 30) for i in range(12)]
        assert first_started.wait(10)
        for _ in range(1000):  # until the 12 - len(first call) others wait in the queue
            if batcher.stats()['waiting'] == 12 - len(calls[0]):
                break
            time.sleep(0.01)
        gate.set()
        results = [f.result() for f in futures]
    assert sorted(results) == [i * 10 for i in range(12)]
    assert [f.result() for f in futures] == [i * 10 for i in range(12)]  # each caller got its own answer
    assert all(1 <= len(c) <= 4 for c in calls)
    assert sorted(itertools.chain.from_iterable(calls)) == list(range(12))
    assert len(calls) <= 1 + 3  # the 11 or fewer queued items went 4 at a time
    assert batcher.stats()['batches'] == len(calls) and batcher.stats()['items'] == 12
    assert batcher.stop(5)
    with pytest.raises(BatcherClosed):
        batcher.submit(1)


def test_micro_batcher_error_reaches_every_item_of_the_batch():
    def run_batch(items):
        raise RuntimeError('model broke on %d items' % len(items))

    batcher = MicroBatcher(run_batch, max_batch=8, max_wait_ms=1)
    batcher.start()
    with pytest.raises(RuntimeError, match='model broke'):
        batcher.submit('x', 5)
    batcher.stop(5)
    with pytest.raises(ValueError, match='max_batch'):
        MicroBatcher(run_batch, max_batch=0)


# ------------------------------------------------------------------------------------------ models

@pytest.fixture(scope='module')
def tokenizer(tiny_bert):
    from bert4keras_ext.tokenizers import Tokenizer
    return Tokenizer(tiny_bert['vocab'], do_lower_case=True)


@pytest.fixture(scope='module')
def classifier(tiny_bert, tmp_path_factory):
    import keras

    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    keras.utils.set_random_seed(3)
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    cls = ExtractToken(0, name='CLS')(bert.output)
    probs = keras.layers.Dense(3, activation='softmax', name='Classifier',
                               kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(cls)
    model = keras.Model(bert.inputs, probs)
    path = str(tmp_path_factory.mktemp('serve') / 'classifier.keras')
    model.save(path)
    return model, path


def serve(task, **kwargs):
    from bert4keras_ext.serving import ModelServer
    kwargs.setdefault('max_wait_ms', 30)
    return ModelServer(task, host='127.0.0.1', port=0, **kwargs).start()


# ------------------------------------------------------------------------------------------ classify

@pytest.fixture(scope='module')
def classify_server(classifier, tokenizer):
    from bert4keras_ext.serving import ClassifyTask, load_predictor
    task = ClassifyTask(load_predictor(classifier[1]), tokenizer, maxlen=16, labels=['neg', 'neu', 'pos'])
    server = serve(task, max_batch=16, max_body_bytes=4096)
    yield server
    server.stop()


def test_classify_concurrent_answers_equal_the_model_and_are_batched(classify_server, classifier, tokenizer):
    model = classifier[0]
    inputs = texts(24, seed=0)
    payloads = [{'text': t} for t in inputs[:20]] + [{'text': a, 'second_text': b} for a, b in
                                                      zip(inputs[20:22], inputs[22:24])]
    answers = post_all(classify_server.url + '/classify', payloads)
    for payload, (status, answer) in zip(payloads, answers):
        assert status == 200, answer
        t, s = tokenizer.encode(payload['text'], payload.get('second_text'))
        expected = direct(model, t, s)  # alone, unpadded
        np.testing.assert_allclose(answer['probabilities'], expected, atol=1e-5)
        assert answer['label_id'] == int(np.argmax(expected))
        assert answer['label'] == ['neg', 'neu', 'pos'][answer['label_id']]
    status, health = get(classify_server.url + '/health')
    assert status == 200 and health['status'] == 'ok' and health['task'] == 'classify'
    assert health['settings']['labels'] == ['neg', 'neu', 'pos']
    stats = health['stats']
    assert stats['items'] >= len(payloads) and stats['batches'] < stats['items']  # micro-batching batched
    assert stats['largest_batch'] > 1
    assert classify_server.task.model_calls == stats['batches']


@pytest.mark.parametrize('body, status, message', [
    (b'{"text": ', 400, 'not valid JSON'),
    (b'["a"]', 400, 'must be a JSON object'),
    (b'{"txt": "a"}', 400, 'missing field "text"'),
    (b'{"text": "a", "lang": "zh"}', 400, 'unknown field "lang"'),
    (b'{"text": "   "}', 400, '"text" is empty'),
    (b'{"text": 5}', 400, '"text" must be a string'),
    (json.dumps({'text': CHARS[:30]}).encode(), 400, '32 tokens long'),
    (b'\xff\xfe', 400, 'not UTF-8'),
    (b'{"text": "' + b'a' * 5000 + b'"}', 413, 'at most 4096'),
])
def test_classify_bad_requests_get_4xx_with_a_message(classify_server, body, status, message):
    got, answer = post(classify_server.url + '/classify', None, raw=body)
    assert got == status
    assert message in answer['error']


def test_unknown_paths_and_methods(classify_server):
    status, answer = post(classify_server.url + '/predict', {'text': '的'})
    assert status == 404 and 'POST /classify' in answer['error']
    status, answer = get(classify_server.url + '/nothing')
    assert status == 404
    status, answer = get(classify_server.url + '/classify')
    assert status == 405 and 'POST' in answer['error']
    # the server still answers normally afterwards
    status, answer = post(classify_server.url + '/classify', {'text': '我们'})
    assert status == 200 and len(answer['probabilities']) == 3


def test_classifier_saved_model_export(classifier, tokenizer, tmp_path):
    from bert4keras_ext.serving import ClassifyTask, load_predictor
    model, _ = classifier
    export_dir = str(tmp_path / 'exported')
    model.export(export_dir, verbose=False)
    task = ClassifyTask(load_predictor(export_dir), tokenizer, maxlen=16)
    assert task.labels == ['0', '1', '2']
    inputs = texts(3, seed=5)
    answers = task.run_batch([task.parse({'text': t}) for t in inputs])
    for text, answer in zip(inputs, answers):
        t, s = tokenizer.encode(text)
        np.testing.assert_allclose(answer['probabilities'], direct(model, t, s), atol=1e-5)
    with pytest.raises(ValueError, match='without saved_model.pb'):
        load_predictor(str(tmp_path))


def test_classify_refuses_a_model_that_does_not_output_probabilities(tiny_bert, tokenizer, tmp_path):
    import keras

    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.serving import ClassifyTask, load_predictor
    bert = build_transformer_model(tiny_bert['config'])
    logits = keras.layers.Dense(2)(ExtractToken(0)(bert.output))
    path = str(tmp_path / 'logits.keras')
    keras.Model(bert.inputs, logits).save(path)
    with pytest.raises(ValueError, match='not probabilities'):
        ClassifyTask(load_predictor(path), tokenizer, maxlen=16)


# ------------------------------------------------------------------------------------------ NER

def reference_entities(text, spans):
    """Entities from inclusive token spans, for Chinese text where token i is character i - 1."""
    out = []
    for i, j, kind in spans:
        if i >= 1 and j <= len(text):  # not [CLS] (0) nor [SEP] (len + 1)
            out.append((i - 1, j, kind, text[i - 1:j]))
    return sorted(out)


def brute_force_tags(emissions, trans):
    """The best tag path by trying every path that starts and ends in O (tag 0)."""
    n, c = emissions.shape
    best, best_score = None, -np.inf
    for middle in itertools.product(range(c), repeat=n - 2):
        path = (0,) + middle + (0,)
        score = sum(emissions[t, y] for t, y in enumerate(path)) + sum(trans[a, b] for a, b in zip(path, path[1:]))
        if score > best_score:
            best, best_score = path, score
    return best


def bio_spans(tags):
    """Inclusive (start, end, type) spans from BIO tags 0 = O, 2k+1 = B, 2k+2 = I (written out here)."""
    spans, start, kind = [], None, None
    for position, tag in enumerate(list(tags) + [0]):
        continues = tag != 0 and tag % 2 == 0 and start is not None and (tag - 2) // 2 == kind
        if not continues:
            if start is not None:
                spans.append((start, position - 1, TYPES[kind]))
            start, kind = (position, (tag - 1) // 2) if tag != 0 else (None, None)
    return spans


@pytest.fixture(scope='module')
def crf_model(tiny_bert, tmp_path_factory):
    import keras

    from bert4keras_ext.heads import ConditionalRandomField
    from bert4keras_ext.models import build_transformer_model
    keras.utils.set_random_seed(4)
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    scores = keras.layers.Dense(2 * len(TYPES) + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                                name='Tag-Scores')(bert.output)
    crf = ConditionalRandomField(name='CRF')
    model = keras.Model(bert.inputs, crf(scores))
    crf._trans.assign(np.random.RandomState(0).normal(0, 2, (5, 5)).astype('float32'))
    path = str(tmp_path_factory.mktemp('serve') / 'ner_crf.keras')
    model.save(path)
    return model, crf, path


def test_ner_crf_entities_equal_exhaustive_decoding(crf_model, tokenizer):
    from bert4keras_ext.serving import NerTask, load_predictor
    model, crf, path = crf_model
    task = NerTask(load_predictor(path), tokenizer, maxlen=10, types=TYPES)
    assert task.head == 'crf'
    inputs = texts(8, seed=1, low=2, high=6)
    trans = np.asarray(crf.trans)
    with serve(task, max_batch=8) as server:
        answers = post_all(server.url + '/ner', [{'text': t} for t in inputs])
    found = 0
    for text, (status, answer) in zip(inputs, answers):
        assert status == 200, answer
        t, s = tokenizer.encode(text)
        emissions = direct(model, t, s)
        expected = reference_entities(text, bio_spans(brute_force_tags(emissions, trans)))
        got = sorted((e['start'], e['end'], e['type'], e['text']) for e in answer['entities'])
        assert got == expected
        found += len(got)
    assert found > 0  # the comparison covered real entities, not only empty lists


def test_ner_global_pointer_spans_and_label_checks(tiny_bert, tokenizer, tmp_path):
    import keras

    from bert4keras_ext.heads import GlobalPointer
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.serving import NerTask, load_predictor
    keras.utils.set_random_seed(5)
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    model = keras.Model(bert.inputs, GlobalPointer(len(TYPES), 8, name='GP')(bert.output))
    path = str(tmp_path / 'ner_gp.keras')
    model.save(path)
    predictor = load_predictor(path)
    with pytest.raises(ValueError, match='3 entity types'):
        NerTask(predictor, tokenizer, maxlen=10, types=TYPES + ['ORG'])
    task = NerTask(predictor, tokenizer, maxlen=10, types=TYPES)
    assert task.head == 'global_pointer'
    inputs = texts(6, seed=2, low=2, high=7)
    with serve(task) as server:
        answers = post_all(server.url + '/ner', [{'text': t} for t in inputs])
    for text, (status, answer) in zip(inputs, answers):
        assert status == 200, answer
        t, s = tokenizer.encode(text)
        scores = direct(model, t, s)
        spans = [(i, j, TYPES[k]) for k in range(len(TYPES)) for i in range(len(t)) for j in range(i, len(t))
                 if scores[k, i, j] > 0]
        got = sorted((e['start'], e['end'], e['type'], e['text']) for e in answer['entities'])
        assert got == reference_entities(text, spans)
        for e in answer['entities']:
            np.testing.assert_allclose(e['score'], scores[TYPES.index(e['type']), e['start'] + 1, e['end']],
                                       atol=1e-4)


# ------------------------------------------------------------------------------------------ generate

def test_generate_batched_beam_search_equals_greedy_recomputation(tiny_bert, tokenizer):
    from bert4keras_ext.generation import CachedDecoder
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.serving import GenerateTask
    transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                          return_keras_model=False)
    task = GenerateTask(transformer, tokenizer, 'unilm', maxlen=12, max_new_tokens=5, topk=1, max_topk=3,
                        jit_compile=False)
    inputs = texts(8, seed=3, low=2, high=8)
    payloads = [{'text': t} for t in inputs[:5]] + [{'text': t, 'topk': 2} for t in inputs[5:]]
    with serve(task, max_batch=8) as server:
        answers = post_all(server.url + '/generate', payloads)
        status, answer = post(server.url + '/generate', {'text': '我们', 'topk': 9})
        assert status == 400 and '"topk" must be a whole number from 1 to 3' in answer['error']
    end = tokenizer._token_end_id
    model = transformer.model
    reference_decoder = CachedDecoder(transformer, end_id=end, maxlen=5, jit_compile=False)
    for payload, (status, answer) in zip(payloads, answers):
        assert status == 200, answer
        source, segments = tokenizer.encode(payload['text'])
        if payload.get('topk', 1) == 1:  # greedy by full recomputation of the whole sequence
            expected = []
            for _ in range(5):
                probas = direct(model, source + expected, segments + [1] * len(expected))[-1]
                expected.append(int(np.argmax(probas)))
                if expected[-1] == end:
                    break
        else:
            expected = [int(i) for i in reference_decoder.beam_search([source, segments], topk=2)]
        assert answer['token_ids'] == expected
        assert answer['text'] == tokenizer.decode(expected)


def test_generate_streams_tokens_as_newline_delimited_json(tiny_bert, tokenizer):
    """{"stream": true}: a chunked answer, one event per token, then the same answer a plain request gets."""
    import http.client
    from urllib.parse import urlsplit
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.serving import GenerateTask
    transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                          return_keras_model=False)
    task = GenerateTask(transformer, tokenizer, 'unilm', maxlen=12, max_new_tokens=5, topk=2, max_topk=3,
                        jit_compile=False)
    with serve(task, max_batch=4) as server:
        status, plain = post(server.url + '/generate', {'text': '我们去'})
        assert status == 200
        address = urlsplit(server.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        connection.request('POST', '/generate', json.dumps({'text': '我们去', 'stream': True}).encode('utf-8'),
                           {'Content-Type': 'application/json'})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader('Transfer-Encoding') == 'chunked'
        events = [json.loads(line) for line in response.read().decode('utf-8').splitlines()]
        connection.close()
        status, answer = post(server.url + '/generate', {'text': '我们去', 'stream': 'yes'})
        assert status == 400 and '"stream" must be true or false' in answer['error']
    assert events[-1] == {'done': True, 'text': plain['text'], 'token_ids': plain['token_ids']}
    assert [e['token_id'] for e in events[:-1]] == plain['token_ids']
    assert ''.join(e['text'] for e in events[:-1]) == plain['text']


# ------------------------------------------------------------------------------------------ CLI

def test_cli_refuses_bad_option_combinations(tmp_path, capsys):
    from bert4keras_ext.serving.cli import main
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('[PAD]\n[UNK]\n[CLS]\n[SEP]\n', encoding='utf-8')
    model = tmp_path / 'm.keras'
    model.write_bytes(b'')
    for argv, message in [
        (['--task', 'ner', '--model', str(model), '--vocab', str(vocab)], '--task ner needs --labels'),
        (['--task', 'generate', '--vocab', str(vocab)], 'needs --config and --checkpoint'),
        (['--task', 'classify', '--vocab', str(vocab)], 'needs --model'),
        (['--task', 'classify', '--model', str(tmp_path / 'no.keras'), '--vocab', str(vocab)], 'does not exist'),
        (['--task', 'classify', '--model', str(model), '--vocab', str(vocab), '--max-batch', '0'], '>= 1'),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_cli_serves_until_sigterm(classifier, tiny_bert, tmp_path):
    import signal
    model, path = classifier
    labels = tmp_path / 'labels.txt'
    labels.write_text('neg\nneu\npos\n', encoding='utf-8')
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)
    process = subprocess.Popen(
        [sys.executable, '-m', 'bert4keras_ext', 'serve', '--task', 'classify', '--model', path,
         '--vocab', tiny_bert['vocab'], '--labels', str(labels), '--port', '0', '--maxlen', '16'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    try:
        line = process.stdout.readline()
        assert line.startswith('serving classify on http://127.0.0.1:'), line + process.stderr.read()
        url = line.split()[3]
        status, answer = post(url + '/classify', {'text': '我们'})
        assert status == 200 and answer['label'] in ('neg', 'neu', 'pos')
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert 'stopped after 1 answered request(s) in 1 batch(es)' in out
    assert err == ''  # TensorFlow's start-up logging stays off stderr
