"""The checkpoint manifest, split by role; `bert4keras_ext.manifest` re-exports every name (import from there).

Modules (each with one job; only `verify` imports TensorFlow, and only when called):

    schema    the manifest format: `load_manifest`, entry validation and defaults, `get_entry`, `ManifestError`
    download  resumable download with a progress bar, integrity (size / sha256), manual and offline steps
    archive   safe unpacking of zip / tar.gz, finding the model folder, `model_paths`, `missing_files`
    verify    `verify`: config, vocab and checkpoint variable shapes against the entry
    cli       `build_parser`, `cli`, `main` (``python -m bert4keras_ext checkpoints ...``)

Dependencies run one way: schema <- archive <- download, schema/archive <- verify, all <- cli.
"""
