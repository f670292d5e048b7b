"""Quiet, honest command-line output for the package's commands and examples.

Three things make a command's output hard to read when it runs in a terminal and wrong when it is
piped to a file, and this module handles each:

- TensorFlow's C++ start-up logging. Importing TensorFlow prints 7-15 lines to stderr ("WARNING: All
  log messages before absl::InitializeLog() is called ...", "I0000 ... oneDNN custom operations are on",
  "Could not find cuda drivers", "E0000 ... failed call to cuInit" on machines without a GPU). Some of
  them are written by absl before ``TF_CPP_MIN_LOG_LEVEL`` is read, so the variable alone does not
  remove them. :func:`quiet_tensorflow` sets the variable *and* captures file descriptor 2 while
  TensorFlow loads and initialises its devices.
- Keras' ``verbose=1`` progress bars: ANSI escapes and ``\\r`` redraws, tens of KB of them in a log file.
  :func:`progress_verbose` picks ``verbose=2`` (one plain line per epoch) when stdout is not a terminal.
- tqdm bars in long Python loops: :func:`progress` shows them on an interactive terminal only.

It also holds the argparse value checks the commands share (:func:`positive_int`,
:func:`non_negative_int`, :func:`int_at_least`, :func:`positive_float`, :func:`existing_dir`,
:func:`existing_file`), so a bad option is refused with a message rather than silently replaced.

Importing this module does not import TensorFlow.
"""
import argparse
import os
import re
import sys
import tempfile

# Lines written by absl / TensorFlow's C++ logging: "I0000 00:00:1796563325.396309   21783 port.cc:153] ..."
# (severity letter, MMDD, time) and the banner absl prints before its logging is initialised.
_CPP_LOG_LINE = re.compile(r'^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog)')
# What starts a Python message: a warning ("path.py:12: UserWarning: text") or a traceback.
_PYTHON_MESSAGE = re.compile(r'^(\S.*:\d+: \w+: |Traceback \(most recent call last\))')

# The text captured by the last quiet_tensorflow() that imported TensorFlow (see tensorflow_startup_log).
_startup_log = None


def quiet_tensorflow():
    """Import TensorFlow (and initialise its devices) without its C++ start-up logging on stderr.

    Does nothing, and returns False, when the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves (they asked
    for TensorFlow's logging) or when TensorFlow is already imported (its start-up lines are already
    out). Otherwise sets ``TF_CPP_MIN_LOG_LEVEL=3`` for the rest of the process, points file descriptor
    2 at a temporary file while ``import tensorflow`` and ``tf.config.list_logical_devices()`` run (the
    latter is where CUDA is probed and "failed call to cuInit" is written), then restores it, and
    returns True. Call it before the first import that loads TensorFlow.

    Nothing is thrown away silently: if the import fails, everything captured is written to stderr
    before the exception propagates; if it succeeds, captured lines that are not TensorFlow's C++
    log lines (a Python warning, say) are written to stderr, and the whole capture stays available
    from :func:`tensorflow_startup_log`.

    Returns:
        True if TensorFlow was imported here with its logging captured, False if nothing was done.
    """
    global _startup_log
    if 'TF_CPP_MIN_LOG_LEVEL' in os.environ or 'tensorflow' in sys.modules:
        return False
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            try:
                import tensorflow as tf
                tf.config.list_logical_devices()
            finally:
                # Python-level writes to sys.stderr are buffered: flush them into the capture first.
                sys.stderr.flush()
                os.dup2(saved, 2)
        except BaseException:
            _startup_log = _read_capture(capture)
            # The import failed: the captured text is probably the reason. Show all of it.
            sys.stderr.write(_startup_log)
            sys.stderr.flush()
            raise
        finally:
            os.close(saved)
        _startup_log = _read_capture(capture)
    other = _not_cpp_log(_startup_log)
    if other:
        sys.stderr.write(other)
        sys.stderr.flush()
    return True


def _not_cpp_log(text):
    """The lines of `text` that are not TensorFlow C++ log records.

    A C++ record can span lines ("I0000 ... This TensorFlow binary is optimized ...\\nTo enable the
    following instructions: ..."): lines after a record belong to it until a line that starts something
    else — a Python warning ("file.py:12: UserWarning: ...") or a traceback.
    """
    kept, in_record = [], False
    for line in text.splitlines(True):
        if _CPP_LOG_LINE.match(line):
            in_record = True
        elif _PYTHON_MESSAGE.match(line):
            in_record = False
        if not in_record and line.strip():
            kept.append(line)
    return ''.join(kept)


def _read_capture(capture):
    capture.seek(0)
    return capture.read().decode('utf-8', errors='replace')


def tensorflow_startup_log():
    """The stderr text that :func:`quiet_tensorflow` captured while TensorFlow loaded ('' if none).

    Returns None when :func:`quiet_tensorflow` has not imported TensorFlow in this process.
    """
    return _startup_log


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def is_interactive():
    """True when both stdout and stderr are terminals: the place for progress bars and ``\\r`` redraws."""
    return _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


def progress_verbose(verbose=1):
    """The Keras ``verbose`` value to use for `fit` / `evaluate` / `predict`, given the one asked for.

    Keras' ``verbose=1`` redraws an ANSI progress bar with ``\\r``, which is right on a terminal and
    tens of KB of escape codes in a piped log. So: 0 stays 0 (silent), 2 stays 2 (one line per epoch),
    and 1 (or ``True`` / ``'auto'``) becomes 1 when stdout is a terminal, 2 when it is not.

    Args:
        verbose: 0, 1, 2, True, False or 'auto'.
    Returns:
        0, 1 or 2.
    """
    if verbose == 'auto' or verbose is True:
        verbose = 1
    if verbose is False:
        verbose = 0
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError('verbose must be 0 (silent), 1 (progress bar on a terminal) or 2 (one line per '
                         'epoch), got %r' % (verbose,))
    if verbose == 1 and not _is_terminal(sys.stdout):
        return 2
    return int(verbose)


def progress(iterable=None, desc=None, total=None, **kwargs):
    """A tqdm progress bar over `iterable` that is shown only on an interactive terminal.

    The bar is disabled when stdout or stderr (where tqdm draws) is not a terminal, so piped output and
    log files get no ``\\r`` redraws; the loop runs the same either way. Extra keyword arguments go to
    `tqdm.tqdm` (``unit``, ``leave``, ...); an explicit ``disable=True`` always hides it.

    Args:
        iterable: what to loop over (or None, then call ``.update(n)`` yourself).
        desc: label in front of the bar.
        total: number of items, when ``len(iterable)`` does not give it.
    Returns:
        a `tqdm.tqdm` object (iterate over it, or use it as a context manager).
    """
    from tqdm import tqdm
    disable = kwargs.pop('disable', False) or not is_interactive()
    return tqdm(iterable, desc=desc, total=total, disable=disable, **kwargs)


def use_first(items, limit, what, option, out=None, indent=''):
    """The first `limit` of `items` (all of them when `limit` is None), saying how many of how many are used.

    Prints e.g. "using 4000 of 10000 training examples (--max-train)" or "using all 2111 validation
    examples", so a cap is never applied silently.

    Args:
        items: a list (already read in full, so that its length is known).
        limit: how many to keep at most, or None for all.
        what: what the items are, e.g. 'training examples'.
        option: the option that sets `limit`, e.g. '--max-train'.
        out: where to print (default sys.stdout).
        indent: text put before the line (to fit a command's layout).
    Returns:
        the kept list.
    """
    out = out or sys.stdout
    if limit is None or limit >= len(items):
        note = 'using all %d %s' % (len(items), what)
        if limit is not None:
            note += ' (%s %d)' % (option, limit)
        print(indent + note, file=out)
        return list(items)
    print('%susing %d of %d %s (%s)' % (indent, limit, len(items), what, option), file=out)
    return list(items[:limit])


# ------------------------------------------------------------------------------------------------
# argparse value checks: `type=` functions that refuse a bad value with a clear message
# ------------------------------------------------------------------------------------------------

def _parse_int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError('expected a whole number, got %r' % (text,)) from None


def int_at_least(minimum):
    """An argparse ``type=`` that accepts whole numbers >= `minimum` and refuses anything else.

    Args:
        minimum: the smallest accepted value.
    Returns:
        a function str -> int raising `argparse.ArgumentTypeError` with the rule and the value given.
    """
    def parse(text):
        value = _parse_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError('expected a whole number >= %d, got %s' % (minimum, text))
        return value
    parse.__name__ = 'int >= %d' % minimum  # argparse names the type in some messages
    return parse


def positive_int(text):
    """argparse ``type=``: a whole number >= 1."""
    return int_at_least(1)(text)


def non_negative_int(text):
    """argparse ``type=``: a whole number >= 0."""
    return int_at_least(0)(text)


def positive_float(text):
    """argparse ``type=``: a finite number > 0 (learning rates, scales)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError('expected a number, got %r' % (text,)) from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError('expected a finite number > 0, got %s' % text)
    return value


def existing_dir(text):
    """argparse ``type=``: the path of an existing directory."""
    if not os.path.isdir(text):
        what = 'is not a directory' if os.path.exists(text) else 'does not exist'
        raise argparse.ArgumentTypeError('%s %s' % (text, what))
    return text


def existing_file(text):
    """argparse ``type=``: the path of an existing file."""
    if not os.path.isfile(text):
        what = 'is not a file' if os.path.exists(text) else 'does not exist'
        raise argparse.ArgumentTypeError('%s %s' % (text, what))
    return text
