"""The manifest format: load and validate ``checkpoints_manifest.json``, resolve entries.

``checkpoints_manifest.json`` (in the package folder) lists the Google-format checkpoints users fetch: the
``model=`` value for ``build_transformer_model``, tokenizer settings, download URLs, the archive layout,
the expected config numbers and, where known, sha256/size. Every problem found is reported at once, in
one :class:`ManifestError` naming the entry and the field.
"""
import difflib
import json
import os
import re

from bert4keras_ext.formats import MODEL_FAMILIES

FORMAT_VERSION = 1
# The manifest sits in the package folder, one level above this subpackage.
MANIFEST_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'checkpoints_manifest.json')

ARCHIVE_FORMATS = ('zip', 'tar.gz')
FILE_ROLES = ('config', 'checkpoint', 'vocab')
PRE_TOKENIZE_VALUES = (None, 'jieba_hmm_false')
CONFIG_KEYS = ('hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
               'vocab_size', 'max_position_embeddings')
ALBERT_MODELS = tuple(m for m, family in MODEL_FAMILIES.items() if family == 'albert')  # factorised embeddings
REQUIRED_FIELDS = ('name', 'model', 'description', 'tokenizer', 'urls', 'archive', 'config',
                   'sha256', 'size_bytes', 'source')
# Error messages list at most this many problems; the exception keeps them all.
MAX_LISTED_PROBLEMS = 50


class ManifestError(Exception):
    """Base class: something about a manifest entry, a download or a checkpoint is wrong."""


# ----------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------

def load_manifest(path=None):
    """Load and validate a manifest; return ``{name: entry}`` in file order.

    ``path`` defaults to the packaged ``checkpoints_manifest.json`` (:data:`MANIFEST_PATH`). Every problem found
    (missing field, wrong type, duplicate name, ...) is reported in one :class:`ManifestError`
    that names the entry and the field.
    """
    path = path or MANIFEST_PATH
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except OSError as e:
        raise ManifestError(f'cannot read manifest {path}: {e}') from e
    except json.JSONDecodeError as e:
        raise ManifestError(f'manifest {path} is not valid JSON: {e}') from e

    problems = []
    if not isinstance(data, dict):
        raise ManifestError(f'manifest {path}: top level must be a JSON object')
    if data.get('format_version') != FORMAT_VERSION:
        problems.append(f"top level: 'format_version' must be {FORMAT_VERSION}, "
                        f"found {data.get('format_version')!r}")
    items = data.get('checkpoints')
    if not isinstance(items, list):
        problems.append("top level: 'checkpoints' must be a list of entries")
        items = []

    entries, seen = {}, set()
    for index, item in enumerate(items):
        label = _entry_label(item, index)
        item_problems = _validate_entry(item)
        problems.extend(f'{label}: {p}' for p in item_problems)
        if isinstance(item, dict) and isinstance(item.get('name'), str):
            if item['name'] in entries or item['name'] in seen:
                problems.append(f'{label}: duplicate name')
            elif not item_problems:
                entries[item['name']] = _with_defaults(item)
            seen.add(item['name'])
    if problems:
        raise ManifestError(_format_problems(f'invalid manifest {path}:', problems))
    return entries


def _entry_label(item, index):
    """Name an entry in messages: by its name when it has one, else by its position."""
    if isinstance(item, dict) and isinstance(item.get('name'), str):
        return f"entry '{item['name']}'"
    return f'entry #{index}'


def _with_defaults(entry):
    """Return a copy of ``entry`` with the optional fields filled in."""
    entry = dict(entry)
    entry.setdefault('direct_download', True)
    entry.setdefault('manual', [])
    entry['archive'] = dict(entry['archive'])
    entry['archive'].setdefault('root', None)
    entry['archive'].setdefault('filename', None)
    return entry


def _validate_entry(entry):
    """Return the list of problems of one manifest entry (empty when valid)."""
    if not isinstance(entry, dict):
        return ['must be a JSON object']
    problems = [f"missing field '{k}'" for k in REQUIRED_FIELDS if k not in entry]
    for key in ('name', 'model', 'description', 'source'):
        if key in entry and not (isinstance(entry[key], str) and entry[key]):
            problems.append(f"'{key}' must be a non-empty string")
    if isinstance(entry.get('model'), str) and entry['model'] and entry['model'] not in MODEL_FAMILIES:
        problems.append(f"'model' must be one of {sorted(MODEL_FAMILIES)}, found {entry['model']!r}")
    problems += _validate_tokenizer(entry.get('tokenizer')) if 'tokenizer' in entry else []
    problems += _validate_urls(entry)
    problems += _validate_archive(entry.get('archive')) if 'archive' in entry else []
    problems += _validate_config(entry.get('config'), entry.get('model')) if 'config' in entry else []
    sha = entry.get('sha256')
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r'[0-9a-f]{64}', sha)):
        problems.append("'sha256' must be null or 64 lowercase hex digits")
    size = entry.get('size_bytes')
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        problems.append("'size_bytes' must be null or a positive integer")
    return problems


def _validate_tokenizer(tok):
    if not isinstance(tok, dict):
        return ["'tokenizer' must be an object"]
    problems = []
    if 'do_lower_case' not in tok:
        problems.append("missing field 'tokenizer.do_lower_case'")
    elif not isinstance(tok['do_lower_case'], bool):
        problems.append("'tokenizer.do_lower_case' must be true or false")
    if 'pre_tokenize' not in tok:
        problems.append("missing field 'tokenizer.pre_tokenize'")
    elif tok['pre_tokenize'] not in PRE_TOKENIZE_VALUES:
        problems.append(f"'tokenizer.pre_tokenize' must be one of {PRE_TOKENIZE_VALUES}, "
                        f"found {tok['pre_tokenize']!r}")
    return problems


def _validate_urls(entry):
    problems = []
    urls = entry.get('urls')
    if 'urls' in entry and not (isinstance(urls, list) and urls and all(isinstance(u, str) and u for u in urls)):
        problems.append("'urls' must be a non-empty list of strings")
    direct = entry.get('direct_download', True)
    if not isinstance(direct, bool):
        problems.append("'direct_download' must be true or false")
    manual = entry.get('manual', [])
    if not isinstance(manual, list) or not all(isinstance(m, dict) and isinstance(m.get('url'), str)
                                               for m in manual):
        problems.append("'manual' must be a list of objects with a 'url'")
    elif direct is False and not manual:
        # Without the share page and its extraction code nobody can follow the instructions.
        problems.append("'direct_download' is false but 'manual' (share links and codes) is empty")
    return problems


def _validate_archive(archive):
    if not isinstance(archive, dict):
        return ["'archive' must be an object"]
    problems = []
    if archive.get('format') not in ARCHIVE_FORMATS:
        problems.append(f"'archive.format' must be one of {ARCHIVE_FORMATS}, found {archive.get('format')!r}")
    files = archive.get('files')
    if not isinstance(files, dict):
        problems.append("missing field 'archive.files'")
    else:
        for role in FILE_ROLES:
            if not (isinstance(files.get(role), str) and files[role]):
                problems.append(f"missing field 'archive.files.{role}'")
    for key in ('root', 'filename'):
        if archive.get(key) is not None and not isinstance(archive[key], str):
            problems.append(f"'archive.{key}' must be null or a string")
    return problems


def _validate_config(config, model):
    if not isinstance(config, dict):
        return ["'config' must be an object"]
    keys = CONFIG_KEYS + (('embedding_size',) if model in ALBERT_MODELS else ())
    problems = []
    for key in keys:
        if key not in config:
            problems.append(f"missing field 'config.{key}'")
        elif config[key] is not None and not (isinstance(config[key], int) and config[key] > 0):
            problems.append(f"'config.{key}' must be null or a positive integer")
    hidden, heads = config.get('hidden_size'), config.get('num_attention_heads')
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        problems.append(f"'config': hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    return problems


def _format_problems(header, problems):
    """One message: a header, then the problems one per line (capped, with a count)."""
    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [header] + [f'  - {p}' for p in shown]
    if len(problems) > len(shown):
        lines.append(f'  ... and {len(problems) - len(shown)} more')
    return '\n'.join(lines)


def get_entry(name_or_entry, manifest=None):
    """Resolve a checkpoint name (or pass an entry dict through, validated).

    ``manifest`` is a manifest path, an already loaded ``{name: entry}`` dict, or None for the
    packaged manifest.
    """
    if isinstance(name_or_entry, dict):
        problems = _validate_entry(name_or_entry)
        if problems:
            raise ManifestError(_format_problems(f'invalid {_entry_label(name_or_entry, 0)}:', problems))
        return _with_defaults(name_or_entry)
    entries = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    if name_or_entry in entries:
        return entries[name_or_entry]
    close = difflib.get_close_matches(str(name_or_entry), list(entries), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ''
    raise ManifestError(f"unknown checkpoint '{name_or_entry}'.{hint} "
                        f"Available: {', '.join(entries)}")
