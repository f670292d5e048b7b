"""The manifest of public Chinese checkpoints: load, download, verify, and the CLI behind them.

``checkpoints_manifest.json`` (next to this module) lists the Google-format checkpoints users fetch
(Google BERT Chinese, HIT RoBERTa-wwm-ext, WoBERT, brightmart ALBERT "google" releases): the
``model=`` value for ``build_transformer_model``, tokenizer settings, download URLs, the archive
layout, the expected config numbers and, where known, sha256/size.

Typical use::

    from bert4keras_ext.manifest import download, verify
    paths = download('chinese_L-12_H-768_A-12', 'models/')
    verify('chinese_L-12_H-768_A-12', paths['dir'])

or from a shell::

    python -m bert4keras_ext.checkpoints list
    python -m bert4keras_ext.checkpoints download chinese_L-12_H-768_A-12 --dest models/
    python -m bert4keras_ext.checkpoints verify wobert path/to/chinese_wobert_L-12_H-768_A-12

Downloads stream to ``<file>.part`` and resume from it (HTTP ``Range``), so an interrupted
download is simply re-run. TensorFlow is imported only by :func:`verify`, so listing and
downloading stay cheap.

This module is the facade: the code lives in `bert4keras_ext.checkpoint_manifest`, one job per module
(``schema``, ``download``, ``archive``, ``verify``, ``cli``), and every name is re-exported here, the
private helpers included, so ``bert4keras_ext.manifest.X`` keeps meaning what it did. To replace a
function for a test, patch it in the module that calls it (e.g. ``checkpoint_manifest.download``).
"""

import sys
import urllib.request  # noqa: F401  -- `manifest.urllib.request.urlopen` is what tests patch to fake the network

from bert4keras_ext.checkpoint_manifest.archive import (  # noqa: F401
    UnsafeArchiveError, _check_member, _missing_files_message, find_model_dir, missing_files, model_paths, unpack,
)
from bert4keras_ext.checkpoint_manifest.cli import (  # noqa: F401
    _cmd_download, _cmd_list, _cmd_sha256, _cmd_verify, _human_size, _verify_summary, build_parser, cli, main,
)
from bert4keras_ext.checkpoint_manifest.download import (  # noqa: F401
    CHUNK_SIZE, DEST_ENV, HTTP_TIMEOUT, DownloadError, IntegrityError, ManualDownloadRequired, _archive_filename,
    _check_integrity, _connection_problem, _fetch, _fetch_archive, _make_dirs, _open_source, _remove_empty_dirs,
    _unpack_example, default_dest_dir, download, manual_instructions, offline_instructions, sha256sum,
)
from bert4keras_ext.checkpoint_manifest.schema import (  # noqa: F401
    ALBERT_MODELS, ARCHIVE_FORMATS, CONFIG_KEYS, FILE_ROLES, FORMAT_VERSION, MANIFEST_PATH, MAX_LISTED_PROBLEMS,
    PRE_TOKENIZE_VALUES, REQUIRED_FIELDS, ManifestError, _entry_label, _format_problems, _validate_archive,
    _validate_config, _validate_entry, _validate_tokenizer, _validate_urls, _with_defaults, get_entry,
    load_manifest,
)
from bert4keras_ext.checkpoint_manifest.verify import (  # noqa: F401
    VerificationError, _check_checkpoint, _check_vocab, _effective_config, _expected_shapes, _find_damaged_tensor,
    _read_config, verify,
)


if __name__ == '__main__':
    sys.exit(main(prog='python -m bert4keras_ext.manifest'))
