"""`python -m bert4keras_ext <command>`: the demo (main job) and the checkpoint tools.

    python -m bert4keras_ext demo [--data-dir DIR]          tiny checkpoint → load → fine-tune → evaluate → decode
    python -m bert4keras_ext checkpoints list|download|verify|sha256 ...
    python -m bert4keras_ext serve --task classify|ner|generate ...   JSON over HTTP with micro-batching

TensorFlow's C++ start-up logging is kept off stderr (bert4keras_ext.console.quiet_tensorflow); set
TF_CPP_MIN_LOG_LEVEL yourself (e.g. TF_CPP_MIN_LOG_LEVEL=0) to see it.
"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == 'demo':
        from bert4keras_ext.demo import main as demo_main
        return demo_main(rest)
    if command == 'checkpoints':
        from bert4keras_ext.manifest import main as checkpoints_main
        return checkpoints_main(rest, prog='python -m bert4keras_ext checkpoints')
    if command == 'serve':
        from bert4keras_ext.serving.cli import main as serve_main
        return serve_main(rest)
    print("unknown command %r; expected 'demo', 'checkpoints' or 'serve' (see --help)" % command, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
