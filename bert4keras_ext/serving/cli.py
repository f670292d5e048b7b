"""`python -m bert4keras_ext serve`: answer JSON requests for a trained model over HTTP.

    # a classifier saved with model.save('classifier.keras') (or a model.export() SavedModel dir)
    python -m bert4keras_ext serve --task classify --model classifier.keras --vocab vocab.txt \\
        --labels labels.txt --port 8000
    # NER: BERT + Dense + ConditionalRandomField (BIO tags), or BERT + GlobalPointer; one type per line
    python -m bert4keras_ext serve --task ner --model ner.keras --vocab vocab.txt --labels types.txt
    # generation: a UniLM (or --application lm) from a Google-format checkpoint, beam search
    python -m bert4keras_ext serve --task generate --config bert_config.json \\
        --checkpoint model/bert_model.ckpt --vocab vocab.txt --max-new-tokens 32 --topk 3

    curl -s localhost:8000/classify -d '{"text": "房间很干净"}'
    curl -s localhost:8000/health

Requests that arrive within --max-wait-ms of each other (up to --max-batch) share one model call.
Texts longer than --maxlen tokens are refused (HTTP 400), never cut. Ctrl-C or SIGTERM stops the
server after answering the requests already received.
"""
import argparse
import os
import sys

from bert4keras_ext.console import existing_file, positive_float, positive_int

TASK_NAMES = ('classify', 'ner', 'generate')


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a number, got %r' % (text,)) from None
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError('expected a finite number >= 0, got %s' % text)
    return value


def _model_path(text):
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError('%s does not exist' % text)
    return text


def build_parser():
    """The serve command's options (checked before TensorFlow loads)."""
    p = argparse.ArgumentParser(prog='python -m bert4keras_ext serve', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--task', required=True, choices=TASK_NAMES)
    p.add_argument('--model', type=_model_path,
                   help='classify / ner: a .keras file (ner: needed for a CRF) or a SavedModel dir (model.export)')
    p.add_argument('--config', type=existing_file, help='generate: bert_config.json')
    p.add_argument('--checkpoint', help='generate: checkpoint prefix (dir/bert_model.ckpt) or directory')
    p.add_argument('--model-type', default='bert', help="generate: build_transformer_model's model= (default bert)")
    p.add_argument('--application', default='unilm', choices=('unilm', 'lm'),
                   help='generate: unilm (text = source) or lm (text = prompt to continue); default unilm')
    p.add_argument('--vocab', type=existing_file, required=True, help='vocab.txt of the model')
    p.add_argument('--cased', action='store_true', help='keep case (default: lower-case, as the Chinese BERTs)')
    p.add_argument('--labels', type=existing_file,
                   help='one label per line: classify class names (default 0, 1, ...); ner entity types (needed)')
    p.add_argument('--host', default='127.0.0.1', help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument('--port', type=int, default=8000, help='TCP port (default 8000; 0 = any free one)')
    p.add_argument('--max-batch', type=positive_int, default=32, help='most requests per model call (default 32)')
    p.add_argument('--max-wait-ms', type=_non_negative_float, default=5.0,
                   help='how long a batch waits for more requests after the first (default 5)')
    p.add_argument('--maxlen', type=positive_int, default=128,
                   help='most tokens per text, [CLS]/[SEP] included; longer texts get 400 (default 128)')
    p.add_argument('--threshold', type=float, default=0.0, help='ner with GlobalPointer: span score cut (default 0)')
    p.add_argument('--max-new-tokens', type=positive_int, default=32, help='generate: most new tokens (default 32)')
    p.add_argument('--topk', type=positive_int, default=1, help='generate: default beam size (default 1 = greedy)')
    p.add_argument('--max-topk', type=positive_int, default=8, help='generate: largest beam a request may ask for')
    p.add_argument('--no-xla', action='store_true', help='generate: do not XLA-compile the decoding step')
    p.add_argument('--max-body-bytes', type=positive_int, default=1 << 20, help='larger bodies get 413 (default 1 MiB)')
    p.add_argument('--request-timeout', type=positive_float, default=60.0,
                   help='seconds a request waits for its answer before 504 (default 60)')
    p.add_argument('--access-log', action='store_true', help='print one line per request to stderr')
    return p


def _check_combination(parser, args):
    if args.task == 'generate':
        if args.model:
            parser.error('--task generate builds the model from --config and --checkpoint; --model is for '
                         'classify / ner')
        if not args.config or not args.checkpoint:
            parser.error('--task generate needs --config and --checkpoint')
        if args.labels:
            parser.error('--labels is for classify / ner, not generate')
    else:
        if not args.model:
            parser.error('--task %s needs --model (a .keras file or a SavedModel directory)' % args.task)
        if args.config or args.checkpoint:
            parser.error('--config / --checkpoint are for --task generate; --task %s reads --model' % args.task)
        if args.task == 'ner' and not args.labels:
            parser.error('--task ner needs --labels (the entity types, one per line, in the model\'s order)')
    if args.topk > args.max_topk:
        parser.error('--topk %d is above --max-topk %d' % (args.topk, args.max_topk))


def build_task(args):
    """The task object the options describe (loads the model; raises ValueError with the file at fault)."""
    from bert4keras_ext.serving.tasks import ClassifyTask, GenerateTask, NerTask, read_labels
    from bert4keras_ext.tokenizers import Tokenizer
    tokenizer = Tokenizer(args.vocab, do_lower_case=not args.cased)
    labels = read_labels(args.labels) if args.labels else None
    if args.task == 'generate':
        from bert4keras_ext.models import build_transformer_model
        transformer = build_transformer_model(args.config, args.checkpoint, model=args.model_type,
                                              application=args.application, return_keras_model=False)
        task = GenerateTask(transformer, tokenizer, args.application, args.maxlen,
                            max_new_tokens=args.max_new_tokens, topk=args.topk, max_topk=args.max_topk,
                            jit_compile=not args.no_xla)
        task.warm_up()
        return task
    from bert4keras_ext.serving.predictor import load_predictor
    predictor = load_predictor(args.model)
    if args.task == 'classify':
        return ClassifyTask(predictor, tokenizer, args.maxlen, labels=labels)
    return NerTask(predictor, tokenizer, args.maxlen, labels, threshold=args.threshold)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combination(parser, args)
    from bert4keras_ext.console import quiet_tensorflow
    quiet_tensorflow()
    from bert4keras_ext.serving.server import ModelServer, serve_forever
    try:
        task = build_task(args)
    except (ValueError, OSError) as e:
        print('serve: error: %s' % e, file=sys.stderr)
        return 2
    server = ModelServer(task, host=args.host, port=args.port, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
                         request_timeout=args.request_timeout, access_log=sys.stderr if args.access_log else None)
    try:
        serve_forever(server)
    except OSError as e:  # the port is taken, or the host cannot be bound
        print('serve: error: cannot listen on %s:%d: %s' % (args.host, args.port, e), file=sys.stderr)
        return 2
    return 0
