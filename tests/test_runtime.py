"""Importing the package chooses TensorFlow's oneDNN kernels on x86-64, and leaves a user's choice alone.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, so each case runs in a fresh
interpreter with a controlled environment.
"""
import json
import os
import platform
import subprocess
import sys

import pytest

REPORT = ('import json, os; from bert4keras_ext.backend import onednn_enabled; '
          'print(json.dumps([os.environ.get("TF_ENABLE_ONEDNN_OPTS"), onednn_enabled()]))')


def run_fresh(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
    env.update(env_changes, TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


x86 = platform.machine().lower() in ('x86_64', 'amd64')


@pytest.mark.skipif(not x86, reason='the package only prefers oneDNN kernels on x86-64 CPUs')
def test_import_before_tensorflow_turns_onednn_on():
    assert run_fresh('import bert4keras_ext; ' + REPORT) == ['1', True]


def test_users_setting_wins():
    assert run_fresh('import bert4keras_ext; ' + REPORT, TF_ENABLE_ONEDNN_OPTS='0') == ['0', False]


def test_tensorflow_imported_first_is_left_as_it_is():
    # the variable is not set behind TensorFlow's back: it would be read by nothing and mislead
    variable, _ = run_fresh('import tensorflow, bert4keras_ext; ' + REPORT)
    assert variable is None
