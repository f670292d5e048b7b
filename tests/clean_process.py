"""The start of a script run in a clean `python -I` process that must not import bert4keras_ext (export tests).

`HIDE_PACKAGE` makes `import bert4keras_ext` fail there (an installed copy would otherwise be importable) and
records the attempts in `Forbid.attempts`; it then imports numpy as np and tensorflow as tf.
"""
import textwrap

HIDE_PACKAGE = textwrap.dedent(r'''
    import importlib.abc, json, os, sys

    class Forbid(importlib.abc.MetaPathFinder):
        """Make `import bert4keras_ext` fail (an installed copy would otherwise be importable)."""
        attempts = []
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] == 'bert4keras_ext':
                self.attempts.append(name)
                raise ImportError('bert4keras_ext is hidden in this process')
            return None

    sys.meta_path.insert(0, Forbid())
    import numpy as np
    import tensorflow as tf
''')
