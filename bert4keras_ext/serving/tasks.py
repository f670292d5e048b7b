"""What each served task does: read a JSON request, run a batch, write the JSON answers.

A task has three parts the server uses:

- ``parse(payload)``: checks one request (a dict from JSON) and turns it into an item, or raises
  `RequestError` (answered with HTTP 400 and its message); runs on the request's thread;
- ``run_batch(items)``: one batched model call for many items, a list of JSON-ready answers; runs on
  the batcher's thread only;
- ``describe()``: what ``GET /health`` reports about it.

Tasks:

- `ClassifyTask` (``POST /classify``): ``{"text": ..., "second_text": ...?}`` →
  ``{"label", "label_id", "probabilities"}`` from a classifier whose output is (batch, classes)
  probabilities;
- `NerTask` (``POST /ner``): ``{"text": ...}`` → ``{"entities": [{"start", "end", "type", "text"}]}``
  with half-open character spans of the original text (`Tokenizer.rematch`), from a token tagger
  (BIO tags 0 = O, 2k+1 = B-type_k, 2k+2 = I-type_k; decoded by Viterbi when it ends in a
  `ConditionalRandomField`, by argmax otherwise) or a `GlobalPointer` (spans with score > 0);
- `GenerateTask` (``POST /generate``): ``{"text": ..., "topk": ...?}`` → ``{"text", "token_ids"}`` by
  `CachedDecoder` beam search, all requests of a batch with the same beam size in one search.

Texts are never cut: a text longer than ``maxlen`` tokens ([CLS]/[SEP] counted) is refused with its
length, so a client never gets an answer about part of what it sent without knowing.
"""
import threading

import numpy as np

__all__ = ['RequestError', 'ClassifyTask', 'NerTask', 'GenerateTask', 'read_labels', 'TASKS']


class RequestError(ValueError):
    """A request the task cannot answer; `status` is the HTTP status (4xx), the message says why."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def read_labels(path):
    """Labels from a UTF-8 file, one per line (blank lines and surrounding spaces ignored)."""
    with open(path, encoding='utf-8') as f:
        labels = [line.strip() for line in f if line.strip()]
    if not labels:
        raise ValueError('%s: no labels in the file (expected one label per line)' % path)
    if len(set(labels)) != len(labels):
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError('%s: duplicate labels %s' % (path, duplicates))
    return labels


def _check_fields(payload, required, optional=()):
    """The request must be a JSON object with `required` keys and no keys outside required + optional."""
    if not isinstance(payload, dict):
        raise RequestError('the request body must be a JSON object such as {"text": "..."}, got %s'
                           % type(payload).__name__)
    missing = [k for k in required if k not in payload]
    if missing:
        raise RequestError('missing field %s; expected fields: %s'
                           % (', '.join('"%s"' % k for k in missing), _field_list(required, optional)))
    unknown = sorted(k for k in payload if k not in required and k not in optional)
    if unknown:
        raise RequestError('unknown field %s; expected fields: %s'
                           % (', '.join('"%s"' % k for k in unknown), _field_list(required, optional)))


def _field_list(required, optional):
    return ', '.join(['"%s"' % k for k in required] + ['"%s" (optional)' % k for k in optional])


def _text_field(payload, name):
    text = payload[name]
    if not isinstance(text, str):
        raise RequestError('"%s" must be a string, got %s' % (name, type(text).__name__))
    if not text.strip():
        raise RequestError('"%s" is empty' % name)
    return text


def _check_length(n_tokens, maxlen, what='text'):
    if n_tokens > maxlen:
        raise RequestError('%s is %d tokens long ([CLS]/[SEP] included); this server takes at most %d '
                           '(--maxlen); nothing is cut off, so send a shorter text' % (what, n_tokens, maxlen))


def _int_field(payload, name, default, low, high):
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError('"%s" must be a whole number from %d to %d, got %r' % (name, low, high, value))
    return value


def _pad(rows, length=None):
    """Right-pad lists of ids with 0 into an int array (b, length or the longest row)."""
    length = length or max(len(r) for r in rows)
    out = np.zeros((len(rows), length), dtype='int32')
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _check_maxlen(predictor, maxlen):
    if predictor.fixed_length is not None and maxlen > predictor.fixed_length:
        raise ValueError('%s: the model takes sequences of exactly %d tokens; --maxlen %d is longer'
                         % (predictor.source, predictor.fixed_length, maxlen))


class _EncoderTask(object):
    """Shared by classify and NER: a `Predictor`, a tokenizer, batching of encoded texts."""

    def __init__(self, predictor, tokenizer, maxlen):
        _check_maxlen(predictor, maxlen)
        self.predictor = predictor
        self.tokenizer = tokenizer
        self.maxlen = maxlen
        self.model_calls = 0

    def _predict(self, token_rows, segment_rows):
        self.model_calls += 1
        length = self.predictor.fixed_length
        return self.predictor(_pad(token_rows, length), _pad(segment_rows, length))

    def warm_up(self):
        """One call on a two-token text: traces the model function and checks its output shape."""
        ids = [self.tokenizer._token_start_id, self.tokenizer._token_end_id]
        out = self._predict([ids], [[0, 0]])
        self.model_calls = 0
        return out


class ClassifyTask(_EncoderTask):
    """Text (or text pair) classification.

    Args:
        predictor: a `Predictor` whose output is (batch, classes) probabilities (rows sum to 1).
        tokenizer: the `Tokenizer` of the model's vocabulary.
        maxlen: most tokens per request, [CLS]/[SEP] included.
        labels: class names (None = "0", "1", ...); their number must equal the model's classes.
    """
    name = 'classify'

    def __init__(self, predictor, tokenizer, maxlen, labels=None):
        super().__init__(predictor, tokenizer, maxlen)
        out = self.warm_up()
        if out.ndim != 2:
            raise ValueError('%s: a classifier must output (batch, classes) probabilities; this model outputs '
                             'shape %s' % (predictor.source, out.shape))
        if np.any(out < 0) or not np.allclose(out.sum(-1), 1.0, atol=1e-3):
            raise ValueError('%s: the output rows are not probabilities (they must be >= 0 and sum to 1: end '
                             'the model with a softmax); got %s' % (predictor.source, np.round(out[0], 4).tolist()))
        self.num_classes = out.shape[1]
        if labels is None:
            labels = [str(i) for i in range(self.num_classes)]
        if len(labels) != self.num_classes:
            raise ValueError('%d labels given (--labels) for a model with %d classes'
                             % (len(labels), self.num_classes))
        self.labels = list(labels)

    def parse(self, payload):
        _check_fields(payload, ['text'], ['second_text'])
        text = _text_field(payload, 'text')
        second = _text_field(payload, 'second_text') if 'second_text' in payload else None
        token_ids, segment_ids = self.tokenizer.encode(text, second)
        _check_length(len(token_ids), self.maxlen, 'the text' if second is None else 'the text pair')
        return token_ids, segment_ids

    def run_batch(self, items):
        probas = self._predict([t for t, _ in items], [s for _, s in items])
        answers = []
        for row in probas:
            k = int(np.argmax(row))
            answers.append({'label': self.labels[k], 'label_id': k,
                            'probabilities': [float(p) for p in row]})
        return answers

    def describe(self):
        return {'labels': self.labels, 'maxlen': self.maxlen, 'model': self.predictor.source}


class NerTask(_EncoderTask):
    """Named-entity recognition with character spans.

    Args:
        predictor: a `Predictor` from a ``.keras`` file whose output is either tag scores (batch, n, 2T+1)
            (with or without a final `ConditionalRandomField`) or `GlobalPointer` scores (batch, T, n, n).
        tokenizer: the `Tokenizer` of the model's vocabulary.
        maxlen: most tokens per request, [CLS]/[SEP] included.
        types: the T entity types, in the model's order.
        threshold: GlobalPointer span score above which a span is an entity (default 0, as bert4keras).
    """
    name = 'ner'

    def __init__(self, predictor, tokenizer, maxlen, types, threshold=0.0):
        from bert4keras_ext.heads import ConditionalRandomField
        from bert4keras_ext.viterbi import ViterbiDecoder
        super().__init__(predictor, tokenizer, maxlen)
        self.types = list(types)
        self.threshold = float(threshold)
        out = self.warm_up()
        crf = None
        if predictor.keras_model is not None:
            crf = next((layer for layer in predictor.keras_model.layers
                        if isinstance(layer, ConditionalRandomField)), None)
        if out.ndim == 3:
            self.head = 'crf' if crf is not None else 'tagger'
            expected = 2 * len(self.types) + 1
            if out.shape[-1] != expected:
                raise ValueError('%s: %d entity types (--labels) need %d BIO tags (O, then B-/I- per type); the '
                                 'model outputs %d' % (predictor.source, len(self.types), expected, out.shape[-1]))
            if crf is None and predictor.keras_model is None:
                raise ValueError('%s: a SavedModel does not say whether a CRF ends the model; give the .keras file'
                                 % predictor.source)
            self.viterbi = None
            if crf is not None:
                # [CLS] and [SEP] are tagged O, so paths start and end in O (as bert4keras' NER example)
                self.viterbi = ViterbiDecoder(np.asarray(crf.trans), starts=[0], ends=[0])
        elif out.ndim == 4:
            self.head = 'global_pointer'
            if out.shape[1] != len(self.types):
                raise ValueError('%s: %d entity types (--labels) for a GlobalPointer with %d heads'
                                 % (predictor.source, len(self.types), out.shape[1]))
        else:
            raise ValueError('%s: an NER model must output tag scores (batch, length, tags) or GlobalPointer '
                             'scores (batch, types, length, length); this one outputs shape %s'
                             % (predictor.source, out.shape))

    def parse(self, payload):
        _check_fields(payload, ['text'])
        text = _text_field(payload, 'text')
        tokens = self.tokenizer.tokenize(text)
        _check_length(len(tokens), self.maxlen, 'the text')
        return text, self.tokenizer.tokens_to_ids(tokens), self.tokenizer.rematch(text, tokens)

    def run_batch(self, items):
        from bert4keras_ext.spans import bio_decode, token_span_to_char_span
        scores = self._predict([ids for _, ids, _ in items], [[0] * len(ids) for _, ids, _ in items])
        answers = []
        for (text, ids, mapping), row in zip(items, scores):
            n = len(ids)
            if self.head == 'global_pointer':
                found = [(float(row[k, i, j]), i, j, self.types[k])
                         for k, i, j in zip(*np.where(row[:, :n, :n] > self.threshold))]
            else:
                tags = self.viterbi.decode(row[:n]) if self.viterbi is not None else row[:n].argmax(-1)
                found = [(None, i, j, kind) for i, j, kind in bio_decode(tags, self.types)]
            entities = []
            for score, i, j, kind in found:
                span = token_span_to_char_span(mapping, int(i), int(j))
                if span is None:  # touches [CLS]/[SEP]: no characters to point at
                    continue
                entity = {'start': span[0], 'end': span[1], 'type': kind, 'text': text[span[0]:span[1]]}
                if score is not None:
                    entity['score'] = score
                entities.append(entity)
            entities.sort(key=lambda e: (e['start'], e['end'], e['type']))
            answers.append({'entities': entities})
        return answers

    def describe(self):
        return {'types': self.types, 'head': self.head, 'maxlen': self.maxlen, 'model': self.predictor.source}


class GenerateTask(object):
    """Generation with beam search from a UniLM (``{"text"}`` is the source) or LM (``{"text"}`` is the prompt).

    Args:
        transformer: `build_transformer_model(..., application='unilm'|'lm', return_keras_model=False)`.
        tokenizer: the `Tokenizer` of its vocabulary.
        mode: 'unilm' (the text is the source, segment 0; the answer is segment 1) or 'lm' (the text is
            a prompt to continue), as the transformer was built.
        maxlen: most source/prompt tokens per request ([CLS]/[SEP] counted).
        max_new_tokens: most generated tokens.
        topk: the beam size when a request gives none; max_topk: the largest a request may ask for.
        jit_compile: XLA-compile the decoding step (faster per token, a compilation per new shape).
    """
    name = 'generate'

    def __init__(self, transformer, tokenizer, mode, maxlen, max_new_tokens=32, topk=1, max_topk=8,
                 jit_compile=True):
        from bert4keras_ext.generation import CachedDecoder
        if mode not in ('unilm', 'lm'):
            raise ValueError("GenerateTask: mode must be 'unilm' or 'lm', got %r" % (mode,))
        self.mode = mode
        max_position = getattr(transformer, 'max_position', None)
        if max_position is not None and maxlen + max_new_tokens > max_position:
            raise ValueError('--maxlen %d + --max-new-tokens %d exceed the model\'s %d positions'
                             % (maxlen, max_new_tokens, max_position))
        if not 1 <= topk <= max_topk:
            raise ValueError('the default beam size (--topk %d) must be from 1 to --max-topk %d' % (topk, max_topk))
        self.tokenizer = tokenizer
        self.maxlen = maxlen
        self.max_new_tokens = max_new_tokens
        self.topk = topk
        self.max_topk = max_topk
        self.decoder = CachedDecoder(transformer, end_id=tokenizer._token_end_id, maxlen=max_new_tokens,
                                     mode=mode, jit_compile=jit_compile)
        self.model_calls = 0  # beam searches run (each one a batch)
        # Streamed requests run on their own request thread, one decoding step at a time under this lock,
        # which the batches hold too: the model never runs two calls at once.
        self.lock = threading.Lock()

    def encode(self, text):
        """The decoder input for `text`: [ids, segments] of the source (UniLM) or [CLS] prompt (LM)."""
        token_ids, segment_ids = self.tokenizer.encode(text)
        if self.mode == 'lm':  # continue the text: no closing [SEP]
            token_ids, segment_ids = token_ids[:-1], segment_ids[:-1]
        return [token_ids, segment_ids]

    def parse(self, payload):
        _check_fields(payload, ['text'], ['topk', 'stream'])
        text = _text_field(payload, 'text')
        topk = _int_field(payload, 'topk', self.topk, 1, self.max_topk)
        stream = payload.get('stream', False)
        if not isinstance(stream, bool):
            raise RequestError('"stream" must be true or false, got %r' % (stream,))
        inputs = self.encode(text)
        _check_length(len(inputs[0]), self.maxlen, 'the text')
        return (inputs, topk, True) if stream else (inputs, topk)

    @staticmethod
    def is_stream(item):
        return len(item) == 3 and item[2]

    def stream(self, item):
        """Yield the events of a streamed request: {"token_id", "text"} per generated token as soon as it is
        certain (`CachedDecoder.beam_search_stream`), then {"done": true, "text", "token_ids"} — the same
        answer a plain request gets."""
        inputs, topk, _ = item
        tokens = self.decoder.beam_search_stream(inputs, topk)
        ids, text = [], ''
        while True:
            with self.lock:
                token = next(tokens, None)
            if token is None:
                break
            ids.append(int(token))
            full = self.tokenizer.decode(ids)
            piece = full[len(text):] if full.startswith(text) else full
            text = full
            yield {'token_id': int(token), 'text': piece}
        yield {'done': True, 'text': self.tokenizer.decode(ids), 'token_ids': ids}

    def run_batch(self, items):
        answers = [None] * len(items)
        for topk in sorted({k for _, k in items}):  # one batched search per beam size
            chosen = [i for i, (_, k) in enumerate(items) if k == topk]
            self.model_calls += 1
            with self.lock:
                outputs = self.decoder.beam_search_batch([items[i][0] for i in chosen], topk)
            for i, ids in zip(chosen, outputs):
                ids = [int(t) for t in ids]
                answers[i] = {'text': self.tokenizer.decode(ids), 'token_ids': ids}
        return answers

    def warm_up(self):
        """Decode one short text, so the first request does not pay for tracing/compiling."""
        self.decoder.beam_search(self.encode('a'), self.topk)

    def describe(self):
        return {'mode': self.mode, 'maxlen': self.maxlen, 'max_new_tokens': self.max_new_tokens,
                'topk': self.topk, 'max_topk': self.max_topk}


TASKS = {'classify': ClassifyTask, 'ner': NerTask, 'generate': GenerateTask}
