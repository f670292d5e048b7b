"""Download one checkpoint: resumable fetch with a progress bar, size / sha256 check, then unpack.

Downloads stream to ``<file>.part`` and resume from it (HTTP ``Range``), so an interrupted download is
simply re-run. Entries published only on share pages raise :class:`ManualDownloadRequired` with the steps;
an unreachable host raises :class:`DownloadError` with the steps to install the checkpoint offline.
"""
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

from tqdm import tqdm

from bert4keras_ext.checkpoint_manifest.archive import _missing_files_message, find_model_dir, model_paths, unpack
from bert4keras_ext.checkpoint_manifest.schema import ManifestError, _format_problems, get_entry

CHUNK_SIZE = 1 << 20
HTTP_TIMEOUT = 60
# Environment variable that overrides the default download directory of the CLI.
DEST_ENV = 'BERT4KERAS_EXT_CHECKPOINTS'


class ManualDownloadRequired(ManifestError):
    """The checkpoint is published only behind a share page (Baidu Pan, Google Drive, ...)."""


class DownloadError(ManifestError):
    """The server could not be reached or the transfer broke off (the ``.part`` file is kept)."""


class IntegrityError(ManifestError):
    """A downloaded file does not have the size or sha256 the manifest promises."""


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

    from bert4keras_ext import __version__
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
