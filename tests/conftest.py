"""Shared fixtures: tiny Google-format checkpoints generated on the fly (no internet, no downloads)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Before any test module imports TensorFlow: the suite then runs the kernels users get by default
# (the package switches TensorFlow's oneDNN kernels on for x86-64 when it is imported first).
import bert4keras_ext  # noqa: E402,F401
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTIMENT_DIR = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'datasets', 'sentiment')


def load_example(name):
    """Import examples/<name>.py as a module (examples are scripts, not a package)."""
    import importlib.util
    path = os.path.join(REPO_ROOT, 'examples', name + '.py')
    spec = importlib.util.spec_from_file_location('example_' + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session', autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
    """Work folders the examples and scripts make with `tempfile.mkdtemp` (they print them for the user) go
    under pytest's own temporary folder, which pytest prunes, instead of piling up in the system's."""
    import tempfile
    previous, previous_env = tempfile.tempdir, os.environ.get('TMPDIR')
    tempfile.tempdir = os.environ['TMPDIR'] = str(tmp_path_factory.mktemp('tempfile'))  # TMPDIR: subprocesses too
    yield
    tempfile.tempdir = previous
    if previous_env is None:
        os.environ.pop('TMPDIR', None)
    else:
        os.environ['TMPDIR'] = previous_env


@pytest.fixture(scope='session')
def tiny_bert(tmp_path_factory):
    """A 2-layer, hidden-32 BERT checkpoint in the exact Google naming (bert_model.ckpt + config + vocab)."""
    from bert4keras_ext.checkpoints import make_random_checkpoint
    return make_random_checkpoint(str(tmp_path_factory.mktemp('tiny_bert')), model='bert', seed=1,
                                  hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=40)


@pytest.fixture(scope='session')
def sentiment_dir():
    if not os.path.isdir(SENTIMENT_DIR):
        pytest.skip('the sentiment dataset is not at %s (it ships with the workplace, not the repo)' % SENTIMENT_DIR)
    return SENTIMENT_DIR
