"""The command line: ``python -m bert4keras_ext checkpoints {list,download,verify,sha256} ...``.

Exit codes: 0 ok, 1 error (the message on stderr), 2 usage, 130 interrupted (re-run to resume).
"""
import argparse
import os
import sys

from bert4keras_ext.checkpoint_manifest.download import DEST_ENV, default_dest_dir, download, sha256sum
from bert4keras_ext.checkpoint_manifest.schema import ManifestError, get_entry, load_manifest
from bert4keras_ext.checkpoint_manifest.verify import verify


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
        from bert4keras_ext.console import quiet_tensorflow
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
