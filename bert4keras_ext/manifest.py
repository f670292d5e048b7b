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
"""
import argparse
import difflib
import glob
import hashlib
import json
import os
import http.client
import re
import socket
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from tqdm import tqdm

from bert4keras_ext.formats import (
    HEAD_LAYERS, MODEL_FAMILIES, describe_layout, detect_family, encoder_layer_indices, family_of,
    is_optimizer_slot, variable_names, variable_shapes,
)

FORMAT_VERSION = 1
MANIFEST_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoints_manifest.json')

ARCHIVE_FORMATS = ('zip', 'tar.gz')
FILE_ROLES = ('config', 'checkpoint', 'vocab')
PRE_TOKENIZE_VALUES = (None, 'jieba_hmm_false')
CONFIG_KEYS = ('hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
               'vocab_size', 'max_position_embeddings')
ALBERT_MODELS = tuple(m for m, family in MODEL_FAMILIES.items() if family == 'albert')  # factorised embeddings
REQUIRED_FIELDS = ('name', 'model', 'description', 'tokenizer', 'urls', 'archive', 'config',
                   'sha256', 'size_bytes', 'source')

CHUNK_SIZE = 1 << 20
HTTP_TIMEOUT = 60
# Error messages list at most this many problems; the exception keeps them all.
MAX_LISTED_PROBLEMS = 50
# Environment variable that overrides the default download directory of the CLI.
DEST_ENV = 'BERT4KERAS_EXT_CHECKPOINTS'


class ManifestError(Exception):
    """Base class: something about a manifest entry, a download or a checkpoint is wrong."""


class ManualDownloadRequired(ManifestError):
    """The checkpoint is published only behind a share page (Baidu Pan, Google Drive, ...)."""


class DownloadError(ManifestError):
    """The server could not be reached or the transfer broke off (the ``.part`` file is kept)."""


class IntegrityError(ManifestError):
    """A downloaded file does not have the size or sha256 the manifest promises."""


class UnsafeArchiveError(ManifestError):
    """An archive member would be written outside the extraction directory."""


class VerificationError(ManifestError):
    """A checkpoint directory does not match its manifest entry; ``problems`` lists everything."""

    def __init__(self, message, problems, report):
        super().__init__(message)
        self.problems = problems
        self.report = report


# ----------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------

def load_manifest(path=None):
    """Load and validate a manifest; return ``{name: entry}`` in file order.

    ``path`` defaults to ``checkpoints_manifest.json`` next to this module. Every problem found
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


# ----------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------

def default_dest_dir():
    """Where the CLI puts downloads: ``$BERT4KERAS_EXT_CHECKPOINTS`` or ``~/.cache/bert4keras_ext/checkpoints``."""
    return os.environ.get(DEST_ENV) or os.path.join(os.path.expanduser('~'), '.cache',
                                                    'bert4keras_ext', 'checkpoints')


def _unpack_example(archive, filename):
    return f'unzip {filename} -d DIR' if archive['format'] == 'zip' else f'tar -xzf {filename} -C DIR'


def manual_instructions(entry):
    """Human steps for an entry that cannot be downloaded automatically."""
    name, archive = entry['name'], entry['archive']
    filename = archive.get('filename') or 'the archive'
    lines = [f"'{name}' cannot be downloaded automatically: it is published only on share pages.",
             f'  1. Download {filename} from one of:']
    for m in entry.get('manual') or [{'url': u} for u in entry['urls']]:
        code = f" (extraction code: {m['code']})" if m.get('code') else ''
        site = f"{m['site']}: " if m.get('site') else ''
        lines.append(f"       {site}{m['url']}{code}")
    lines.append(f'  2. Unpack it, e.g. {_unpack_example(archive, filename)}')
    lines.append(f'  3. Check it: python -m bert4keras_ext checkpoints verify {name} DIR')
    return '\n'.join(lines)


def offline_instructions(entry, dest_dir):
    """Human steps to install a direct-download entry on a machine that cannot reach its URLs."""
    name, archive = entry['name'], entry['archive']
    try:
        filename = _archive_filename(entry, entry['urls'][0])
    except ManifestError:
        filename = 'the archive'
    lines = [f"To install '{name}' without network access on this machine:",
             f'  1. on a machine with internet access, download {filename} from '
             + ('one of:' if len(entry['urls']) > 1 else ':')]
    lines += [f'       {url}' for url in entry['urls']]
    lines.append(f'  2. copy it here and unpack it, e.g. {_unpack_example(archive, filename)}')
    lines.append(f'  3. check it: python -m bert4keras_ext checkpoints verify {name} DIR')
    lines.append(f'  (or copy it to {os.path.join(dest_dir, filename)} and run this download again: '
                 'an archive already there is checked and unpacked, not downloaded)')
    return '\n'.join(lines)


def _make_dirs(path):
    """`os.makedirs(path, exist_ok=True)`; return the directories it created, outermost first."""
    created, current = [], os.path.abspath(path)
    while not os.path.exists(current):
        created.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    os.makedirs(path, exist_ok=True)
    return created[::-1]


def _remove_empty_dirs(created):
    """Remove those of `created` (outermost first) that are still empty; return the removed ones."""
    removed = []
    for directory in reversed(created):
        try:
            os.rmdir(directory)  # fails on a non-empty folder (a .part file to resume from): keep it
        except OSError:
            break
        removed.append(directory)
    return removed


def download(name_or_entry, dest_dir, url_index=None, progress=True, verify=True, manifest=None):
    """Download, check and unpack one checkpoint; return the paths of its files.

    Args:
        name_or_entry: a manifest name or an entry dict.
        dest_dir: directory for the archive (``<file>``, ``<file>.part`` while downloading) and
            the unpacked folder ``dest_dir/<name>/``.
        url_index: use only ``urls[url_index]``; by default the URLs are tried in order.
        progress: show a tqdm progress bar.
        verify: check size and sha256 when the manifest gives them.
        manifest: manifest path or loaded dict (default: the packaged manifest).

    Returns:
        ``{'dir', 'config', 'checkpoint', 'vocab', 'archive'}``; ``checkpoint`` is the prefix
        (e.g. ``.../bert_model.ckpt``) as ``build_transformer_model`` expects it.

    An interrupted download leaves ``<file>.part``; calling again resumes it. A size or sha256
    mismatch raises :class:`IntegrityError` and keeps ``<file>.part`` for inspection. When no URL can
    be reached, :class:`DownloadError` says so, lists the steps to install the checkpoint offline
    (:func:`offline_instructions`), and the folders this call created are removed if still empty.
    """
    entry = get_entry(name_or_entry, manifest)
    if not entry['direct_download']:
        raise ManualDownloadRequired(manual_instructions(entry))
    created = _make_dirs(dest_dir)
    try:
        archive_path = _fetch_archive(entry, dest_dir, url_index, progress, verify)
    except BaseException as e:
        # Leave no empty folder behind; a folder holding a .part file stays, to resume from.
        removed = _remove_empty_dirs(created)
        if not isinstance(e, DownloadError):
            raise
        # removed[-1] is the outermost: the folder the user will look for
        note = f'\n(removed the empty folder {removed[-1]} that this download had created)' if removed else ''
        raise DownloadError(f'{e}{note}\n{offline_instructions(entry, dest_dir)}') from e
    unpack_dir = os.path.join(dest_dir, entry['name'])
    model_dir = find_model_dir(unpack_dir, entry) if os.path.isdir(unpack_dir) else None
    if model_dir is None:
        # Not unpacked yet (or unpacked incompletely): extracting again is safe and idempotent.
        unpack(archive_path, unpack_dir, entry['archive']['format'])
        model_dir = find_model_dir(unpack_dir, entry)
    if model_dir is None:
        raise ManifestError(_missing_files_message(entry, unpack_dir))
    paths = model_paths(model_dir, entry)
    paths['archive'] = archive_path
    return paths


def _archive_filename(entry, url):
    """The local file name: the manifest's ``archive.filename`` or the URL's last path part."""
    name = entry['archive'].get('filename')
    if not name:
        name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name or name in ('.', '..') or '/' in name or '\\' in name:
        raise ManifestError(f"entry '{entry['name']}': cannot derive a file name from {url}; "
                            "set archive.filename")
    return name


def _fetch_archive(entry, dest_dir, url_index, progress, verify):
    """Make sure ``dest_dir/<file>`` exists and passes the checks; return its path."""
    urls = entry['urls']
    if url_index is not None:
        if not 0 <= url_index < len(urls):
            raise ManifestError(f"entry '{entry['name']}' has {len(urls)} URL(s); "
                                f'url_index {url_index} is out of range')
        urls = [urls[url_index]]
    final = os.path.join(dest_dir, _archive_filename(entry, urls[0]))
    if os.path.exists(final):
        # A finished archive from an earlier run: check it rather than downloading again.
        if verify:
            _check_integrity(final, entry, keep_hint='delete it to download again')
        return final

    part = final + '.part'
    errors = []
    for url in urls:
        try:
            _fetch(url, part, entry.get('size_bytes'), progress, os.path.basename(final))
            break
        except DownloadError as e:
            # Network trouble: try the next mirror; the .part stays for a later resume.
            errors.append(f'{url}: {e}')
    else:
        raise DownloadError(_format_problems(f"could not download '{entry['name']}':", errors))
    if verify:
        _check_integrity(part, entry, keep_hint='it was kept for inspection; delete it to download again')
    os.replace(part, final)
    return final


def _fetch(url, part, expected_size, progress, desc):
    """Stream ``url`` into ``part``, resuming from its current size."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if expected_size is not None and offset > expected_size:
        raise IntegrityError(f'{part} is {offset} bytes, larger than the expected {expected_size}; '
                             'delete it to download again')
    if expected_size is not None and offset == expected_size:
        return  # already complete; the integrity check decides whether it is good
    source, offset, total = _open_source(url, offset)
    if source is None:
        return  # the server says there is nothing past what we have
    mode = 'ab' if offset else 'wb'  # 'wb' also restarts when a server ignored the Range header
    written = offset
    try:
        with source, open(part, mode) as out, tqdm(
                total=total or expected_size, initial=offset, unit='B', unit_scale=True,
                unit_divisor=1024, desc=desc, disable=not progress) as bar:
            while True:
                chunk = source.read(CHUNK_SIZE)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
        raise DownloadError(f'transfer interrupted after {written} bytes ({e}); '
                            f'run again to resume from {part}') from e
    if total is not None and written < total:
        raise DownloadError(f'transfer ended after {written} of {total} bytes; '
                            f'run again to resume from {part}')


def _open_source(url, offset):
    """Open ``url`` positioned at ``offset``; return ``(stream or None, offset, total or None)``.

    ``file://`` URLs (used by tests and local mirrors) resume by seeking; HTTP(S) resumes with a
    ``Range`` request. A server that ignores ``Range`` answers 200, and we start over at 0.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == 'file':
        path = urllib.request.url2pathname(parsed.path)
        try:
            f = open(path, 'rb')
        except OSError as e:
            raise DownloadError(f'cannot open {path}: {e}') from e
        total = os.fstat(f.fileno()).st_size
        if offset >= total:
            f.close()
            return None, offset, total
        f.seek(offset)
        return f, offset, total
    if parsed.scheme not in ('http', 'https'):
        raise DownloadError(f'unsupported URL scheme in {url}')

    from . import __version__
    headers = {'User-Agent': f'bert4keras_ext/{__version__}'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=HTTP_TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None, offset, None  # Range starts at the end: the .part is complete
        raise DownloadError(f'HTTP {e.code} {e.reason}') from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(_connection_problem(url, e)) from e
    if offset and response.status != 206:
        offset = 0
    length = response.headers.get('Content-Length')
    total = offset + int(length) if length and length.isdigit() else None
    return response, offset, total


def _connection_problem(url, error):
    """'could not reach host ...' with the reason in words (the bare errno text says little)."""
    reason = getattr(error, 'reason', error)
    host = urllib.parse.urlparse(url).netloc or url
    if isinstance(reason, socket.gaierror):
        why = f'its name could not be resolved ({reason}); is this machine offline?'
    elif isinstance(reason, ConnectionRefusedError):
        why = f'the connection was refused ({reason})'
    elif isinstance(reason, TimeoutError):
        why = f'no answer within {HTTP_TIMEOUT} s'
    else:
        why = str(reason)
    return f'could not reach host {host}: {why}'


def sha256sum(path, progress=False):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f, tqdm(total=os.path.getsize(path), unit='B', unit_scale=True,
                                     unit_divisor=1024, desc='sha256', disable=not progress) as bar:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b''):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _check_integrity(path, entry, keep_hint):
    """Compare size and sha256 with the manifest (those it gives); raise :class:`IntegrityError`."""
    problems = []
    size, expected_size = os.path.getsize(path), entry.get('size_bytes')
    if expected_size is not None and size != expected_size:
        problems.append(f'size: expected {expected_size} bytes, found {size}')
    expected_sha = entry.get('sha256')
    if expected_sha is not None and not problems:  # hashing a wrong-size file tells nothing new
        found = sha256sum(path)
        if found != expected_sha:
            problems.append(f'sha256: expected {expected_sha}, found {found}')
    if problems:
        raise IntegrityError(_format_problems(
            f"{path} does not match the manifest entry '{entry['name']}' ({keep_hint}):", problems))


# ----------------------------------------------------------------------------------------------
# Unpacking
# ----------------------------------------------------------------------------------------------

def unpack(archive_path, target_dir, fmt):
    """Extract a zip or tar.gz into ``target_dir``, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links and device files are rejected, so a hostile archive cannot write outside
    ``target_dir``.
    """
    os.makedirs(target_dir, exist_ok=True)
    if fmt == 'zip':
        with zipfile.ZipFile(archive_path) as zf:
            for info in zf.infolist():
                _check_member(info.filename, target_dir, archive_path)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f'{archive_path}: member {info.filename!r} is a symlink')
            zf.extractall(target_dir)
    elif fmt == 'tar.gz':
        with tarfile.open(archive_path, 'r:gz') as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, target_dir, archive_path)
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f'{archive_path}: member {member.name!r} is a link or '
                                             'special file')
            if hasattr(tarfile, 'data_filter'):
                tf.extractall(target_dir, members=members, filter='data')
            else:  # pragma: no cover - Python without extraction filters
                tf.extractall(target_dir, members=members)
    else:
        raise ManifestError(f'unknown archive format {fmt!r}; expected one of {ARCHIVE_FORMATS}')


def _check_member(name, target_dir, archive_path):
    """Reject member names that are absolute or climb out of ``target_dir``."""
    normalized = name.replace('\\', '/')
    if normalized.startswith('/') or re.match(r'^[A-Za-z]:', normalized):
        raise UnsafeArchiveError(f'{archive_path}: member {name!r} has an absolute path')
    if '..' in normalized.split('/'):
        raise UnsafeArchiveError(f"{archive_path}: member {name!r} contains '..'")
    # Belt and braces: the resolved destination must stay inside target_dir.
    root = os.path.realpath(target_dir)
    dest = os.path.realpath(os.path.join(root, normalized))
    if os.path.commonpath([root, dest]) != root:
        raise UnsafeArchiveError(f'{archive_path}: member {name!r} would be written outside {target_dir}')


# ----------------------------------------------------------------------------------------------
# Locating files
# ----------------------------------------------------------------------------------------------

def model_paths(model_dir, entry):
    """``{'dir', 'config', 'checkpoint', 'vocab'}`` for a model folder (existence not checked)."""
    files = entry['archive']['files']
    paths = {'dir': model_dir}
    for role in FILE_ROLES:
        paths[role] = os.path.join(model_dir, files[role])
    return paths


def missing_files(model_dir, entry):
    """Which of config / checkpoint index / checkpoint data / vocab are absent in ``model_dir``."""
    paths = model_paths(model_dir, entry)
    missing = []
    if not os.path.isfile(paths['config']):
        missing.append(f"config {entry['archive']['files']['config']}")
    prefix = paths['checkpoint']
    ckpt = entry['archive']['files']['checkpoint']
    if not os.path.isfile(prefix + '.index'):
        missing.append(f'checkpoint index {ckpt}.index')
    if not glob.glob(glob.escape(prefix) + '.data-*'):
        missing.append(f'checkpoint data {ckpt}.data-00000-of-00001')
    if not os.path.isfile(paths['vocab']):
        missing.append(f"vocab {entry['archive']['files']['vocab']}")
    return missing


def find_model_dir(base_dir, entry):
    """Find the folder holding the entry's files under ``base_dir``; None if there is none.

    Tries ``base_dir`` itself, then ``base_dir/<archive.root>``, then searches below: mirrors of
    the same checkpoint differ in whether (and how) they wrap the files in a folder.
    """
    root = entry['archive'].get('root')
    candidates = [base_dir] + ([os.path.join(base_dir, root)] if root else [])
    for candidate in candidates:
        if os.path.isdir(candidate) and not missing_files(candidate, entry):
            return candidate
    config_name = os.path.basename(entry['archive']['files']['config'])
    for dirpath, dirnames, filenames in os.walk(base_dir):
        dirnames.sort()  # deterministic choice if an archive holds several copies
        if config_name in filenames and not missing_files(dirpath, entry):
            return dirpath
    return None


def _missing_files_message(entry, base_dir):
    """Explain what is missing, looking where the files were expected."""
    root = entry['archive'].get('root')
    expected = os.path.join(base_dir, root) if root and os.path.isdir(os.path.join(base_dir, root)) else base_dir
    found = sorted(os.listdir(expected)) if os.path.isdir(expected) else []
    return _format_problems(
        f"'{entry['name']}': the checkpoint files were not found in {expected} "
        f"(contents: {', '.join(found[:20]) or 'nothing'}). Missing:",
        missing_files(expected, entry))


# ----------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------

def verify(name_or_entry, checkpoint_dir, manifest=None):
    """Check an unpacked checkpoint against its manifest entry; return a report dict.

    Checks that config, checkpoint index/data and vocab exist (in ``checkpoint_dir``, its
    ``archive.root`` subfolder or below), that the config numbers equal the manifest's, that the
    vocab file has ``vocab_size`` tokens, and that the checkpoint's variables have the shapes the
    config implies (every encoder layer for BERT, the shared block for ALBERT). Raises one
    :class:`VerificationError` listing every problem; its ``report`` holds what was found.
    """
    entry = get_entry(name_or_entry, manifest)
    model_dir = find_model_dir(checkpoint_dir, entry) if os.path.isdir(checkpoint_dir) else None
    report = {'name': entry['name'], 'model': entry['model'], 'dir': model_dir or checkpoint_dir,
              'files': None, 'config': None, 'vocab_tokens': None, 'checkpoint': None, 'ok': False}
    if model_dir is None:
        if not os.path.isdir(checkpoint_dir):
            problems = [f'{checkpoint_dir} is not a directory']
        else:
            problems = [f'missing {m}' for m in missing_files(checkpoint_dir, entry)]
        raise VerificationError(_format_problems(
            f"'{entry['name']}' in {checkpoint_dir} failed verification:", problems), problems, report)

    paths = model_paths(model_dir, entry)
    report['files'] = paths
    problems = []
    config = _read_config(paths['config'], problems)
    report['config'] = config
    effective = _effective_config(entry, config, problems)
    report['vocab_tokens'] = _check_vocab(paths['vocab'], effective, problems)
    report['checkpoint'] = _check_checkpoint(paths['checkpoint'], entry['model'], effective, problems)
    report['ok'] = not problems
    if problems:
        raise VerificationError(_format_problems(
            f"'{entry['name']}' in {model_dir} failed verification:", problems), problems, report)
    return report


def _read_config(path, problems):
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        problems.append(f'cannot read config {path}: {e}')
        return {}
    if not isinstance(config, dict):
        problems.append(f'config {path} is not a JSON object')
        return {}
    return config


def _effective_config(entry, config, problems):
    """Compare config with manifest; return the numbers to check the checkpoint against.

    The file's values win (they are what the model will be built from); the manifest fills in
    what the file lacks. A missing ``embedding_size`` means ``hidden_size``, as in bert4keras.
    """
    expected = entry['config']
    found = dict(config)
    if 'embedding_size' not in found and 'hidden_size' in found:
        found['embedding_size'] = found['hidden_size']
    effective = {}
    keys = CONFIG_KEYS + ('embedding_size',)
    for key in keys:
        want, have = expected.get(key), found.get(key)
        if have is None:
            if want is not None and key in CONFIG_KEYS:
                problems.append(f'config has no {key} (manifest expects {want})')
            effective[key] = want
            continue
        if want is not None and have != want:
            problems.append(f'config {key}: expected {want}, found {have}')
        effective[key] = have
    hidden, heads = effective.get('hidden_size'), effective.get('num_attention_heads')
    if hidden and heads and hidden % heads:
        problems.append(f'config hidden_size {hidden} is not divisible by num_attention_heads {heads}')
    if entry['model'] not in ALBERT_MODELS:
        effective['embedding_size'] = effective.get('hidden_size')
    return effective


def _check_vocab(path, effective, problems):
    """Count vocab tokens (one per line) and compare with ``vocab_size``."""
    with open(path, encoding='utf-8', errors='replace') as f:
        tokens = sum(1 for line in f if line.rstrip('\r\n'))
    vocab_size = effective.get('vocab_size')
    if vocab_size is not None and tokens != vocab_size:
        problems.append(f'vocab file has {tokens} tokens but vocab_size is {vocab_size}')
    return tokens


def _check_checkpoint(prefix, model, cfg, problems):
    """Compare checkpoint variable shapes with the config; return a summary dict."""
    import tensorflow as tf  # lazy: only verification needs TensorFlow

    try:
        all_vars = dict(tf.train.list_variables(prefix))
    except Exception as e:  # TF raises several types for unreadable checkpoints
        problems.append(f'cannot read checkpoint {prefix}: {e}')
        return None
    variables = {k: tuple(v) for k, v in all_vars.items() if not is_optimizer_slot(k)}
    expected, family_hint = _expected_shapes(model, cfg, variables)
    if family_hint:
        problems.append(family_hint)
    checked = 0
    for name, shape in expected.items():
        if None in shape:
            continue  # a number the manifest does not know and the config did not give
        checked += 1
        if name not in variables:
            problems.append(f'missing variable {name} (expected shape {shape})')
        elif variables[name] != shape:
            problems.append(f'{name}: expected shape {shape}, found {variables[name]}')
    damaged = _find_damaged_tensor(prefix)
    if damaged:
        problems.append(damaged)
    layers = encoder_layer_indices(variables)
    num_layers = cfg.get('num_hidden_layers')
    if model not in ALBERT_MODELS and num_layers is not None and len(layers) > num_layers:
        problems.append(f'checkpoint has {len(layers)} encoder layers but num_hidden_layers is {num_layers}')
    return {'prefix': prefix, 'num_variables': len(variables),
            'num_optimizer_slots': len(all_vars) - len(variables),
            'encoder_layers': len(layers) if model not in ALBERT_MODELS else None,
            'checked_variables': checked}


def _find_damaged_tensor(prefix):
    """Read every tensor in full (TensorFlow checks each one's CRC32C); describe the first bad one, or None."""
    from bert4keras_ext.checkpoints import CheckpointError, CheckpointReader
    try:
        reader = CheckpointReader(prefix)
        found = reader.find_damaged()
    except CheckpointError as e:
        return str(e)
    if found is None:
        return None
    name, error = found
    return (f'data file {", ".join(reader.data_files()) or prefix + ".data-*"} is damaged: tensor {name} '
            f'cannot be read ({error}); download the checkpoint again')


def _expected_shapes(model, cfg, variables):
    """``{variable name: shape}`` implied by the config, plus a hint if the family looks wrong.

    The shapes are `formats.variable_shapes` without the heads (the pooler and the MLM/NSP layers are
    not in every release) and the segment table (type_vocab_size is not a manifest number); a size the
    config does not give stays None and is not checked.
    """
    H, E = cfg.get('hidden_size'), cfg.get('embedding_size')
    family, found = family_of(model), detect_family(variables)
    hint = None
    if family == 'albert':
        if found == 'bert':
            hint = f"checkpoint looks like BERT ({describe_layout('bert')}), not ALBERT: use model='bert'"
        elif found == 'albert_brightmart_legacy':
            hint = (f"checkpoint uses the early brightmart ALBERT naming ({describe_layout(found)}); "
                    'use the *_google_zh release')
        mapping_kernel = variable_names('albert', 'Embedding-Mapping')[0]
        word_embeddings = variable_names('albert', 'Embedding-Token')[0]
        if hint is None and E != H and mapping_kernel not in variables and \
                variables.get(word_embeddings, (None, None))[-1:] == (H,):
            hint = (f'checkpoint has hidden-size embeddings and no {mapping_kernel} (a converted brightmart '
                    'ALBERT): its config needs embedding_size = hidden_size')
    elif found == 'albert':
        hint = f"checkpoint looks like ALBERT ({describe_layout('albert')}), not BERT: use model='albert'"
    sizes = {key: cfg.get(key) for key in ('vocab_size', 'hidden_size', 'intermediate_size',
                                           'max_position_embeddings')}
    sizes['num_hidden_layers'] = cfg.get('num_hidden_layers') or 0
    sizes['embedding_size'] = E if family == 'albert' else None  # a BERT layout's embeddings are hidden-size
    shapes = variable_shapes(family, sizes, skip=HEAD_LAYERS + ('Embedding-Segment',))
    return shapes, hint


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _human_size(n):
    if n is None:
        return '?'
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024


def _cmd_list(args, out):
    entries = load_manifest(args.manifest)
    rows = [('NAME', 'MODEL=', 'H/L/A', 'VOCAB', 'SIZE', 'DOWNLOAD')]
    for e in entries.values():
        c = e['config']
        shape = '/'.join(str(c.get(k) if c.get(k) is not None else '?')
                         for k in ('hidden_size', 'num_hidden_layers', 'num_attention_heads'))
        rows.append((e['name'], e['model'], shape, str(c.get('vocab_size') or '?'),
                     _human_size(e.get('size_bytes')), 'direct' if e['direct_download'] else 'manual'))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print('  '.join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)
    print("\nmanual = share page only (Baidu Pan / Google Drive): 'download NAME' prints the steps.",
          file=out)
    return 0


def _cmd_download(args, out):
    dest = args.dest or default_dest_dir()
    # Where the files go, said first (on stderr: stdout carries the paths to paste into a script).
    if get_entry(args.name, args.manifest)['direct_download']:
        print(f"downloading '{args.name}' into {dest}" + ('' if args.dest else ' (--dest chooses another folder)'),
              file=sys.stderr)
    paths = download(args.name, dest, url_index=args.url_index, progress=not args.quiet,
                     verify=not args.no_verify, manifest=args.manifest)
    if not args.no_verify:
        from .console import quiet_tensorflow
        quiet_tensorflow()  # verify loads TensorFlow: keep its C++ start-up logging off stderr
        report = verify(args.name, paths['dir'], manifest=args.manifest)
        print(_verify_summary(report), file=out)
    # The three paths in the form bert4keras scripts start with.
    print(f"# unpacked in {paths['dir']}", file=out)
    print(f"config_path = {paths['config']!r}", file=out)
    print(f"checkpoint_path = {paths['checkpoint']!r}", file=out)
    print(f"dict_path = {paths['vocab']!r}", file=out)
    return 0


def _verify_summary(report):
    c, ck = report['config'], report['checkpoint']
    return (f"OK: '{report['name']}' in {report['dir']}: model='{report['model']}', "
            f"H/L/A={c.get('hidden_size')}/{c.get('num_hidden_layers')}/{c.get('num_attention_heads')}, "
            f"vocab {report['vocab_tokens']} tokens, {ck['num_variables']} checkpoint variables "
            f"({ck['checked_variables']} shapes checked)")


def _cmd_verify(args, out):
    print(_verify_summary(verify(args.name, args.dir, manifest=args.manifest)), file=out)
    return 0


def _cmd_sha256(args, out):
    if not os.path.isfile(args.file):
        raise ManifestError(f'{args.file} is not a file')
    print(f'{sha256sum(args.file, progress=not args.quiet)}  {os.path.getsize(args.file)}  {args.file}',
          file=out)
    return 0


def build_parser(prog=None):
    """The argparse parser behind :func:`cli`."""
    parser = argparse.ArgumentParser(
        prog=prog, description='List, download and verify the public Chinese checkpoints '
                               'of bert4keras_ext.')
    parser.add_argument('--manifest', default=None,
                        help='manifest JSON to use (default: the packaged checkpoints_manifest.json)')
    sub = parser.add_subparsers(dest='command', metavar='{list,download,verify,sha256}')
    sub.required = True

    p = sub.add_parser('list', help='show the checkpoints in the manifest')
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser('download', help='download, check and unpack a checkpoint (resumable)')
    p.add_argument('name')
    p.add_argument('--dest', default=None,
                   help=f'target directory (default: ${DEST_ENV} or ~/.cache/bert4keras_ext/checkpoints)')
    p.add_argument('--no-verify', action='store_true',
                   help='skip the size/sha256 check and the checkpoint verification')
    p.add_argument('--url-index', type=int, default=None, help='use only this entry of urls')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser('verify', help='check an unpacked checkpoint against the manifest')
    p.add_argument('name')
    p.add_argument('dir')
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser('sha256', help='print sha256 and size of a file (to fill in the manifest)')
    p.add_argument('file')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=_cmd_sha256)
    return parser


def cli(argv=None, prog=None):
    """Run the command line; return the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on usage errors and --help; report it as a code
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args, sys.stdout)
    except ManifestError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninterrupted; run the same command again to resume the download', file=sys.stderr)
        return 130


def main(argv=None, prog='python -m bert4keras_ext checkpoints'):
    """`python -m bert4keras_ext checkpoints {list,download,verify,sha256} ...`; returns the exit code.

    `verify` loads TensorFlow at once, so for it TensorFlow's C++ start-up logging is kept off stderr here
    (`console.quiet_tensorflow`); `download` does the same once the archive is in, before verifying it;
    `list`, `sha256` and bad options do not load TensorFlow at all.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, _ = build_parser(prog).parse_known_args(argv)
    except SystemExit:  # a usage error or --help: cli() below reports it
        args = None
    if args is not None and args.command == 'verify':
        from bert4keras_ext.console import quiet_tensorflow
        quiet_tensorflow()
    return cli(argv, prog=prog)


if __name__ == '__main__':
    sys.exit(main(prog='python -m bert4keras_ext.manifest'))
