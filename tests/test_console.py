"""Quiet, honest command-line output: TensorFlow's start-up logging, progress output when piped, option
checks, capped data said out loud, and a download that fails offline with a way forward.

The TensorFlow-logging tests run in subprocesses, without the TF_CPP_MIN_LOG_LEVEL that conftest sets, so they
see what a user's shell sees. Most use a fake `tensorflow` package (a few lines on sys.path that write to fd 2
the way absl does) so they take a fraction of a second; one piped run of the real demo checks the whole thing.
Nothing here touches the internet: the download tests use a closed local port.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import urllib.error

import pytest

from bert4keras_ext import console
from bert4keras_ext import manifest as mf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPP_LOG_PREFIXES = ('I0000', 'W0000', 'E0000', 'WARNING: All log messages')


def user_env(**changes):
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL (conftest sets one for the suite)."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    env.update(changes)
    return env


def run_python(code, env, timeout=120):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_plain(text):
    """No terminal control (ANSI escapes, carriage returns) and no TensorFlow C++ log line."""
    assert '\x1b[' not in text and '\r' not in text, text[:2000]
    bad = [line for line in text.splitlines() if line.startswith(CPP_LOG_PREFIXES)]
    assert not bad, bad


# ------------------------------------------------------------------------------------------------
# quiet_tensorflow
# ------------------------------------------------------------------------------------------------

FAKE_LOG = 'I0000 00:00:1796563325.396309   21783 port.cc:153] fake oneDNN line'
FAKE_CONTINUATION = 'To enable the following instructions: FAKE, rebuild TensorFlow'
FAKE_CUINIT = 'E0000 00:00:1796563334.106401   21783 cuda_platform.cc:52] fake failed call to cuInit'


def fake_tensorflow(tmp_path, broken=False):
    """A `tensorflow` package that writes absl-style lines to fd 2 (and a Python warning), or fails to import."""
    package = tmp_path / 'fake_site' / 'tensorflow'
    package.mkdir(parents=True)
    if broken:
        body = '''
            import os
            os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')
            os.write(2, b'fake loader: libtensorflow_framework.so.2: cannot open shared object file\\n')
            raise ImportError('fake tensorflow is broken')
        '''
    else:
        body = '''
            import os
            import warnings
            os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')
            os.write(2, (%r + '\\n' + %r + '\\n').encode())
            warnings.warn('a python-level note from the fake tensorflow', UserWarning)

            class config:
                @staticmethod
                def list_logical_devices():
                    os.write(2, (%r + '\\n').encode())  # where the real one probes CUDA
                    return []
        ''' % (FAKE_LOG, FAKE_CONTINUATION, FAKE_CUINIT)
    (package / '__init__.py').write_text(textwrap.dedent(body), encoding='utf-8')
    return str(package.parent)


def fake_env(site, **changes):
    env = user_env(**changes)
    env['PYTHONPATH'] = os.pathsep.join([site, env['PYTHONPATH']])
    return env


def test_quiet_tensorflow_captures_cpp_logging_and_keeps_python_warnings(tmp_path):
    result = run_python('''
        import os, sys
        from bert4keras_ext.console import quiet_tensorflow, tensorflow_startup_log
        print(quiet_tensorflow(), os.environ['TF_CPP_MIN_LOG_LEVEL'])
        print(repr(tensorflow_startup_log()))
        sys.stderr.write('stderr works again\\n')
    ''', fake_env(fake_tensorflow(tmp_path)))
    assert result.returncode == 0, result.stderr
    first, log = result.stdout.splitlines()
    assert first == 'True 3'
    for line in (FAKE_LOG, FAKE_CONTINUATION, FAKE_CUINIT, 'WARNING: All log messages'):
        assert line in log  # captured, not lost
        assert line not in result.stderr
    assert 'UserWarning: a python-level note from the fake tensorflow' in result.stderr
    assert result.stderr.rstrip().endswith('stderr works again')  # fd 2 restored


def test_quiet_tensorflow_replays_the_capture_when_the_import_fails(tmp_path):
    result = run_python('''
        from bert4keras_ext.console import quiet_tensorflow
        quiet_tensorflow()
    ''', fake_env(fake_tensorflow(tmp_path, broken=True)))
    assert result.returncode == 1
    err = result.stderr
    assert 'fake loader: libtensorflow_framework.so.2: cannot open shared object file' in err
    assert 'WARNING: All log messages before absl::InitializeLog()' in err  # everything, as it was written
    assert 'ImportError: fake tensorflow is broken' in err
    assert err.index('cannot open shared object file') < err.index('Traceback')  # the cause comes first


def test_quiet_tensorflow_leaves_a_users_log_level_alone(tmp_path):
    result = run_python('''
        import os
        from bert4keras_ext.console import quiet_tensorflow, tensorflow_startup_log
        print(quiet_tensorflow(), os.environ['TF_CPP_MIN_LOG_LEVEL'], tensorflow_startup_log())
        import tensorflow
    ''', fake_env(fake_tensorflow(tmp_path), TF_CPP_MIN_LOG_LEVEL='0'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', '0', 'None']
    assert FAKE_LOG in result.stderr and 'WARNING: All log messages' in result.stderr


def test_real_tensorflow_logging_stays_when_the_user_asks_for_it():
    result = run_python('''
        from bert4keras_ext.console import quiet_tensorflow
        quiet_tensorflow()
        import tensorflow as tf
        tf.config.list_logical_devices()
    ''', user_env(TF_CPP_MIN_LOG_LEVEL='0'))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith(CPP_LOG_PREFIXES) for line in result.stderr.splitlines()), result.stderr


def test_quiet_tensorflow_is_a_no_op_once_tensorflow_is_imported(monkeypatch):
    import tensorflow  # noqa: F401
    monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
    assert console.quiet_tensorflow() is False
    assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ


# ------------------------------------------------------------------------------------------------
# The demo, piped: plain lines only
# ------------------------------------------------------------------------------------------------

def test_piped_demo_prints_plain_lines_only(tmp_path):
    work_dir = str(tmp_path / 'work')
    result = subprocess.run(
        [sys.executable, '-m', 'bert4keras_ext', 'demo', '--epochs', '1', '--mlm-epochs', '1', '--max-train', '64',
         '--max-valid', '32', '--maxlen', '16', '--work-dir', work_dir],
        cwd=REPO_ROOT, env=user_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert_plain(result.stdout)
    assert_plain(result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0] == 'work dir: %s (--work-dir)' % work_dir  # where the files go, said first
    assert lines[-1].endswith('files in %s' % work_dir)
    assert '64 train (--max-train) / 32 valid (--max-valid)' in lines[1]
    # Keras' verbose=2: one plain summary line per epoch (MLM and fine-tuning), not a redrawn bar
    epoch_lines = [line for line in lines if re.match(r'^\d+/\d+ - \d+m?s - ', line)]
    assert len(epoch_lines) == 2, lines
    assert 'val_accuracy' in epoch_lines[1]
    assert os.path.isdir(os.path.join(work_dir, 'adapted_bert'))


# ------------------------------------------------------------------------------------------------
# Demo options: refused with a message, zero means zero, caps said out loud
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('argv, message', [
    (['--epochs', '-1'], 'argument --epochs: expected a whole number >= 0, got -1'),
    (['--mlm-epochs', 'two'], "argument --mlm-epochs: expected a whole number, got 'two'"),
    (['--maxlen', '3'], 'argument --maxlen: expected a whole number >= 5, got 3'),
    (['--max-train', '0'], 'argument --max-train: expected a whole number >= 1, got 0'),
    (['--max-valid', '-5'], 'argument --max-valid: expected a whole number >= 1, got -5'),
    (['--max-train', 'all'], "'all' needs --data-dir"),
])
def test_demo_refuses_bad_options(argv, message, capsys):
    from bert4keras_ext.demo import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_a_missing_or_incomplete_data_dir(tmp_path, capsys):
    from bert4keras_ext.demo import main
    with pytest.raises(SystemExit):
        main(['--data-dir', str(tmp_path / 'nowhere')])
    assert 'argument --data-dir: %s does not exist' % (tmp_path / 'nowhere') in capsys.readouterr().err
    (tmp_path / 'sentiment.train.data').write_text('好\t1\n', encoding='utf-8')
    with pytest.raises(SystemExit):
        main(['--data-dir', str(tmp_path)])
    assert 'has no sentiment.valid.data' in capsys.readouterr().err


def test_run_demo_refuses_bad_values_before_any_work(tmp_path):
    from bert4keras_ext.demo import run_demo
    for kwargs in ({'epochs': -1}, {'mlm_epochs': 1.5}, {'maxlen': 4}, {'max_train': 0}, {'max_valid': 'all'}):
        with pytest.raises(ValueError, match='run_demo'):
            run_demo(work_dir=str(tmp_path / 'work'), **kwargs)
    assert not (tmp_path / 'work').exists()


def test_demo_zero_epochs_skip_their_stage_and_caps_are_reported(tmp_path, capsys):
    from bert4keras_ext.demo import generate_reviews, run_demo
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    for name, n, seed in (('sentiment.train.data', 30, 0), ('sentiment.valid.data', 10, 1)):
        rows = ['%s\t%d' % pair for pair in generate_reviews(n, seed=seed)]
        (data_dir / name).write_text('\n'.join(rows) + '\n', encoding='utf-8')
    work_dir = tmp_path / 'work'
    result = run_demo(data_dir=str(data_dir), work_dir=str(work_dir), epochs=0, mlm_epochs=0, maxlen=24,
                      max_train=20, max_valid='all', verbose=1)
    out = capsys.readouterr().out
    assert 'using 20 of 30 training examples (--max-train)' in out
    assert 'using all 10 validation examples' in out
    assert 'masked-LM adaptation skipped (--mlm-epochs 0)' in out
    assert 'fine-tuning skipped (--epochs 0)' in out
    assert 'validation accuracy (untrained classifier):' in out
    assert_plain(out)  # verbose=1 under pytest (stdout not a terminal) gives no bar
    assert not (work_dir / 'adapted_bert').exists()  # nothing trained, nothing saved
    assert 0.0 <= result['accuracy'] <= 1.0


# ------------------------------------------------------------------------------------------------
# The helpers
# ------------------------------------------------------------------------------------------------

class FakeTerminal:
    def __init__(self):
        self.written = []

    def isatty(self):
        return True

    def write(self, text):
        self.written.append(text)

    def flush(self):
        pass


def test_progress_verbose_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, 'stdout', FakeTerminal())
    assert [console.progress_verbose(v) for v in (0, 1, 2, True, False, 'auto')] == [0, 1, 2, 1, 0, 1]
    monkeypatch.undo()
    piped = type('Piped', (FakeTerminal,), {'isatty': lambda self: False})()
    monkeypatch.setattr(sys, 'stdout', piped)
    assert [console.progress_verbose(v) for v in (0, 1, 2, True, 'auto')] == [0, 2, 2, 2, 2]
    for bad in (3, -1, 'yes', None, 1.5):
        with pytest.raises(ValueError, match='verbose must be 0'):
            console.progress_verbose(bad)


def test_progress_bar_only_on_an_interactive_terminal(monkeypatch):
    bar = console.progress(range(3), desc='x')  # under pytest: not a terminal
    assert bar.disable and list(bar) == [0, 1, 2]
    monkeypatch.setattr(sys, 'stdout', FakeTerminal())
    monkeypatch.setattr(sys, 'stderr', FakeTerminal())
    assert console.is_interactive()
    bar = console.progress(range(3), desc='x')
    assert not bar.disable and list(bar) == [0, 1, 2]
    assert console.progress(range(3), disable=True).disable


def test_use_first_says_how_many_are_used(capsys):
    assert console.use_first(list(range(10)), 4, 'training examples', '--max-train') == [0, 1, 2, 3]
    assert console.use_first(list(range(3)), None, 'test examples', '--num-eval') == [0, 1, 2]
    assert console.use_first(list(range(3)), 5, 'test examples', '--num-eval') == [0, 1, 2]
    assert capsys.readouterr().out.splitlines() == [
        'using 4 of 10 training examples (--max-train)', 'using all 3 test examples',
        'using all 3 test examples (--num-eval 5)']


def test_argparse_value_checks(tmp_path):
    assert console.positive_int('3') == 3 and console.non_negative_int('0') == 0
    assert console.int_at_least(5)('5') == 5 and console.positive_float('1e-3') == 1e-3
    for check, text, message in ((console.positive_int, '0', '>= 1, got 0'),
                                 (console.non_negative_int, '-2', '>= 0, got -2'),
                                 (console.positive_int, '2.5', "whole number, got '2.5'"),
                                 (console.positive_float, '0', '> 0, got 0'),
                                 (console.positive_float, 'nan', '> 0, got nan'),
                                 (console.positive_float, 'inf', 'finite')):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            check(text)
    (tmp_path / 'f.txt').write_text('x')
    assert console.existing_dir(str(tmp_path)) == str(tmp_path)
    assert console.existing_file(str(tmp_path / 'f.txt')) == str(tmp_path / 'f.txt')
    with pytest.raises(argparse.ArgumentTypeError, match='is not a directory'):
        console.existing_dir(str(tmp_path / 'f.txt'))
    with pytest.raises(argparse.ArgumentTypeError, match='does not exist'):
        console.existing_file(str(tmp_path / 'missing'))


# ------------------------------------------------------------------------------------------------
# Examples: options are checked (before any model is built)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, argv, message', [
    ('task_sentiment_albert', ['--epochs', '0'], 'argument --epochs: expected a whole number >= 1, got 0'),
    ('task_sentiment_albert', ['--verbose', '3'], 'argument --verbose: invalid choice: 3'),
    ('task_sentiment_adversarial_training', ['--learning-rate', '0'], 'argument --learning-rate: expected a finite number > 0, got 0'),
    ('task_sentiment_virtual_adversarial_training', ['--num-labeled', '800'], 'leaves no unlabeled review'),
    ('basic_gibbs_sampling_via_mlm', ['--steps', '100', '--burn-in', '100'], 'leaves no samples'),
    ('basic_gibbs_sampling_via_mlm', ['--minlen', '9', '--maxlen', '8'], '--minlen 9 is above --maxlen 8'),
    ('task_seq2seq_autotitle', ['--maxlen', '20', '--title-maxlen', '18'], 'leaves no room for the content'),
    ('task_sentence_similarity_am_softmax', ['--pairs-per-batch', '1'], 'expected a whole number >= 2, got 1'),
    ('task_nl2sql', ['--max-train', '10'], '--max-train / --max-valid cap the questions read from --data-dir'),
    ('task_relation_extraction_gplinker', ['--data-dir', '/nonexistent/duie'], '/nonexistent/duie does not exist'),
])
def test_example_options_are_checked(name, argv, message, capsys):
    from conftest import load_example
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_examples_quiet_tensorflow_only_when_run_as_scripts():
    """Imported by the tests, an example must not touch fd 2 or the environment: the call sits under __main__."""
    folder = os.path.join(REPO_ROOT, 'examples')
    for name in sorted(os.listdir(folder)):
        if not name.endswith('.py'):
            continue
        source = open(os.path.join(folder, name), encoding='utf-8').read()
        block = "if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr\n" \
                "    quiet_tensorflow()\n"
        assert block in source, name
        head = source[:source.index(block)]
        # nothing before the call loads TensorFlow
        assert not re.search(r'^(from|import) (bert4keras_ext\.(?!console)|keras|tensorflow)', head, re.M), name


# ------------------------------------------------------------------------------------------------
# Download without network
# ------------------------------------------------------------------------------------------------

def closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def unreachable_manifest(tmp_path, urls):
    entry = {'name': 'tiny_bert', 'model': 'bert', 'description': 'test entry', 'source': 'https://example.org/x',
             'tokenizer': {'do_lower_case': True, 'pre_tokenize': None}, 'direct_download': True, 'urls': urls,
             'archive': {'format': 'zip', 'root': 'tiny_bert',
                         'files': {'config': 'bert_config.json', 'checkpoint': 'bert_model.ckpt',
                                   'vocab': 'vocab.txt'}},
             'config': {'hidden_size': 8, 'num_hidden_layers': 2, 'num_attention_heads': 2, 'intermediate_size': 16,
                        'vocab_size': 10, 'max_position_embeddings': 16},
             'sha256': None, 'size_bytes': None}
    path = tmp_path / 'manifest.json'
    path.write_text(json.dumps({'format_version': 1, 'checkpoints': [entry]}), encoding='utf-8')
    return path


def test_download_without_network_explains_and_removes_the_empty_folder(tmp_path):
    url = 'http://127.0.0.1:%d/tiny_bert.zip' % closed_port()
    manifest = unreachable_manifest(tmp_path, [url])
    dest = tmp_path / 'new' / 'checkpoints'
    result = subprocess.run([sys.executable, '-m', 'bert4keras_ext', 'checkpoints', '--manifest', str(manifest),
                             'download', 'tiny_bert', '--dest', str(dest)],
                            cwd=REPO_ROOT, env=user_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    err = result.stderr
    assert err.startswith("downloading 'tiny_bert' into %s" % dest)  # where, said first
    assert 'could not reach host 127.0.0.1:' in err and 'connection was refused' in err
    assert '(removed the empty folder %s that this download had created)' % (tmp_path / 'new') in err
    assert 'on a machine with internet access, download tiny_bert.zip' in err and url in err
    assert 'unzip tiny_bert.zip -d DIR' in err
    assert 'python -m bert4keras_ext checkpoints verify tiny_bert DIR' in err
    assert 'Traceback' not in err and result.stdout == ''
    assert not (tmp_path / 'new').exists()  # the folders this command created are gone
    assert_plain(err)


def test_download_keeps_a_folder_it_did_not_create(tmp_path):
    manifest = unreachable_manifest(tmp_path, ['http://127.0.0.1:%d/a.zip' % closed_port()])
    dest = tmp_path / 'existing'
    dest.mkdir()
    with pytest.raises(mf.DownloadError) as err:
        mf.download('tiny_bert', dest, progress=False, manifest=str(manifest))
    assert dest.is_dir() and 'removed the empty folder' not in str(err.value)
    assert 'a.zip and run this download again' in str(err.value)


def test_unresolvable_host_is_named(tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, 'Name or service not known'))
    monkeypatch.setattr(mf.urllib.request, 'urlopen', no_dns)
    manifest = unreachable_manifest(tmp_path, ['https://models.example.invalid/tiny_bert.zip'])
    with pytest.raises(mf.DownloadError) as err:
        mf.download('tiny_bert', tmp_path / 'dest', progress=False, manifest=str(manifest))
    message = str(err.value)
    assert ('could not reach host models.example.invalid: its name could not be resolved '
            '([Errno -2] Name or service not known); is this machine offline?') in message
    assert 'To install \'tiny_bert\' without network access on this machine' in message
    assert not (tmp_path / 'dest').exists()
