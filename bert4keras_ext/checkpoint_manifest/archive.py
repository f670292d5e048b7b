"""The archive and the folder it unpacks to: safe extraction, finding the model folder, its file paths.

Mirrors of the same checkpoint differ in whether (and how) they wrap the files in a folder, so the model
folder is searched for rather than assumed.
"""
import glob
import os
import re
import tarfile
import zipfile

from bert4keras_ext.checkpoint_manifest.schema import ARCHIVE_FORMATS, FILE_ROLES, ManifestError, _format_problems


class UnsafeArchiveError(ManifestError):
    """An archive member would be written outside the extraction directory."""


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
