"""bert4keras' own example scripts, ported by changing only their imports, run end to end.

Every file in tests/bert4keras_scripts/ (except tiny.py) is a script in the style of one of bert4keras'
examples: its model construction, generator, Loss / evaluator / decoder classes and API calls, on a tiny
random checkpoint and small generated data. Each runs in a fresh process, as a user runs a script, and
checks its own outcome (a loss that falls, a decoder that returns text, a metric in range, weights that
save and load back); a script that raises or whose checks fail exits non-zero and fails here.
"""
import os
import subprocess
import sys

import pytest

SCRIPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bert4keras_scripts')
SCRIPTS = sorted(f[:-3] for f in os.listdir(SCRIPT_DIR) if f.endswith('.py') and f != 'tiny.py'
                 and not f.startswith('_'))


@pytest.fixture(scope='module')
def checkpoint_dir(tmp_path_factory):
    # shared by the scripts of one run, so the tiny checkpoints are written once
    return str(tmp_path_factory.mktemp('bert4keras_script_checkpoints'))


@pytest.mark.parametrize('script', SCRIPTS)
def test_bert4keras_script_runs(script, checkpoint_dir, tmp_path):
    # each script works in a folder of its own, as it would on a user's machine: data files and saved
    # weights (random_order.json, best_model.weights.h5) never meet another script's
    work_dir = str(tmp_path)
    env = dict(os.environ, BERT4KERAS_SCRIPT_DIR=work_dir, BERT4KERAS_SCRIPT_CHECKPOINTS=checkpoint_dir,
               TF_CPP_MIN_LOG_LEVEL='3', PYTHONHASHSEED='0')
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = repo_root + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, os.path.join(SCRIPT_DIR, script + '.py')], env=env, cwd=work_dir,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    tail = proc.stdout[-6000:]
    assert proc.returncode == 0, 'script %s failed (exit %d):\n%s' % (script, proc.returncode, tail)
    assert 'RESULT' in proc.stdout, 'script %s printed no RESULT line:\n%s' % (script, tail)
