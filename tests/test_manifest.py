"""Tests for bert4keras_ext.manifest: manifest validation, resumable download, unpacking, verify, CLI.

Nothing here touches the internet: archives are built in tmp_path and served through ``file://``
URLs (or a localhost HTTP server for the Range tests); checkpoints are tiny TF1-named files
written with ``tf.raw_ops.SaveV2``.
"""
import copy
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from bert4keras_ext import manifest as mf

# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

TINY_BERT = dict(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                 vocab_size=10, max_position_embeddings=16)
TINY_ALBERT = dict(TINY_BERT, embedding_size=4)
VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '的', '是', '中', '国', '人']


def bert_variables(cfg):
    """Google BERT variable names/shapes, spelled out independently of the module under test."""
    H, I, V, P = (cfg['hidden_size'], cfg['intermediate_size'], cfg['vocab_size'],
                  cfg['max_position_embeddings'])
    v = {'bert/embeddings/word_embeddings': (V, H),
         'bert/embeddings/position_embeddings': (P, H),
         'bert/embeddings/token_type_embeddings': (2, H),
         'bert/embeddings/LayerNorm/gamma': (H,),
         'bert/embeddings/LayerNorm/beta': (H,),
         'bert/pooler/dense/kernel': (H, H),
         'bert/pooler/dense/bias': (H,)}
    for i in range(cfg['num_hidden_layers']):
        p = f'bert/encoder/layer_{i}/'
        for proj in ('query', 'key', 'value'):
            v[p + f'attention/self/{proj}/kernel'] = (H, H)
            v[p + f'attention/self/{proj}/bias'] = (H,)
        v[p + 'attention/output/dense/kernel'] = (H, H)
        v[p + 'attention/output/dense/bias'] = (H,)
        v[p + 'attention/output/LayerNorm/gamma'] = (H,)
        v[p + 'attention/output/LayerNorm/beta'] = (H,)
        v[p + 'intermediate/dense/kernel'] = (H, I)
        v[p + 'intermediate/dense/bias'] = (I,)
        v[p + 'output/dense/kernel'] = (I, H)
        v[p + 'output/dense/bias'] = (H,)
        v[p + 'output/LayerNorm/gamma'] = (H,)
        v[p + 'output/LayerNorm/beta'] = (H,)
    return v


def albert_variables(cfg):
    """Google ALBERT names: factorised embeddings, mapping E->H, one shared block."""
    H, I, V, P, E = (cfg['hidden_size'], cfg['intermediate_size'], cfg['vocab_size'],
                     cfg['max_position_embeddings'], cfg['embedding_size'])
    v = {'bert/embeddings/word_embeddings': (V, E),
         'bert/embeddings/position_embeddings': (P, E),
         'bert/embeddings/token_type_embeddings': (2, E),
         'bert/embeddings/LayerNorm/gamma': (E,),
         'bert/embeddings/LayerNorm/beta': (E,),
         'bert/encoder/embedding_hidden_mapping_in/kernel': (E, H),
         'bert/encoder/embedding_hidden_mapping_in/bias': (H,)}
    p = 'bert/encoder/transformer/group_0/inner_group_0/'
    for proj in ('query', 'key', 'value'):
        v[p + f'attention_1/self/{proj}/kernel'] = (H, H)
        v[p + f'attention_1/self/{proj}/bias'] = (H,)
    v[p + 'attention_1/output/dense/kernel'] = (H, H)
    v[p + 'attention_1/output/dense/bias'] = (H,)
    v[p + 'LayerNorm/gamma'] = (H,)
    v[p + 'LayerNorm/beta'] = (H,)
    v[p + 'ffn_1/intermediate/dense/kernel'] = (H, I)
    v[p + 'ffn_1/intermediate/dense/bias'] = (I,)
    v[p + 'ffn_1/intermediate/output/dense/kernel'] = (I, H)
    v[p + 'ffn_1/intermediate/output/dense/bias'] = (H,)
    v[p + 'LayerNorm_1/gamma'] = (H,)
    v[p + 'LayerNorm_1/beta'] = (H,)
    return v


def save_checkpoint(prefix, variables):
    """Write a TF1-named checkpoint containing exactly ``variables`` (name -> shape)."""
    import tensorflow as tf
    names = sorted(variables)
    tensors = [tf.zeros(variables[n], tf.float32) for n in names]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[''] * len(names),
                      tensors=tensors)


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_entry(url, archive_path, fmt='zip', root='tiny_bert', model='bert', config=None, **extra):
    """A valid manifest entry pointing at a local archive, with correct sha256/size."""
    entry = {
        'name': 'tiny_bert',
        'model': model,
        'description': 'tiny test checkpoint',
        'tokenizer': {'do_lower_case': True, 'pre_tokenize': None},
        'direct_download': True,
        'urls': [url],
        'archive': {'format': fmt, 'root': root,
                    'files': {'config': 'bert_config.json', 'checkpoint': 'bert_model.ckpt',
                              'vocab': 'vocab.txt'}},
        'config': dict(config or TINY_BERT),
        'sha256': sha256_of(archive_path),
        'size_bytes': os.path.getsize(archive_path),
        'source': 'https://example.org/tiny',
    }
    entry.update(extra)
    return entry


def model_files(cfg=TINY_BERT, padding=0):
    """Files of a fake (non-TF) model folder: config, vocab, checkpoint index/data."""
    return {'bert_config.json': json.dumps(cfg).encode(),
            'vocab.txt': ('\n'.join(VOCAB) + '\n').encode(),
            'bert_model.ckpt.index': b'index',
            # Some bulk so that a partial download is a real prefix of the file.
            'bert_model.ckpt.data-00000-of-00001': os.urandom(2048 + padding)}


def build_zip(path, files, root='tiny_bert'):
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in files.items():
            zf.writestr(f'{root}/{name}' if root else name, data)
    return path


def build_targz(path, files, root='tiny_bert'):
    with tarfile.open(path, 'w:gz') as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f'{root}/{name}' if root else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_manifest(path, entries, version=1):
    path.write_text(json.dumps({'format_version': version, 'checkpoints': entries}), encoding='utf-8')
    return path


@pytest.fixture
def zip_entry(tmp_path):
    (tmp_path / 'src').mkdir()
    archive = build_zip(tmp_path / 'src' / 'tiny_bert.zip', model_files())
    return make_entry(archive.as_uri(), archive), archive


# ------------------------------------------------------------------------------------------------
# The packaged manifest
# ------------------------------------------------------------------------------------------------

REQUIRED_NAMES = ['chinese_L-12_H-768_A-12', 'chinese-roberta-wwm-ext', 'chinese-roberta-wwm-ext-large',
                  'wobert', 'wobert_plus', 'albert_tiny_google_zh', 'albert_small_google_zh',
                  'albert_base_google_zh', 'albert_large_google_zh', 'albert_xlarge_google_zh']


def test_real_manifest_validates_and_lists_required_checkpoints():
    entries = mf.load_manifest()
    assert set(REQUIRED_NAMES) <= set(entries)
    raw = json.loads(Path(mf.MANIFEST_PATH).read_text(encoding='utf-8'))
    assert raw['format_version'] == 1
    for entry in raw['checkpoints']:
        for field in mf.REQUIRED_FIELDS:
            assert field in entry, (entry.get('name'), field)


@pytest.mark.parametrize('name', REQUIRED_NAMES)
def test_real_manifest_entries_are_plausible(name):
    e = mf.load_manifest()[name]
    c = e['config']
    assert c['hidden_size'] % c['num_attention_heads'] == 0
    assert c['num_hidden_layers'] >= 1 and c['max_position_embeddings'] >= 128
    if e['model'] == 'albert':
        assert c['embedding_size'] <= c['hidden_size']
    # Every link is https; share-page-only releases say so and give their codes.
    links = e['urls'] + [m['url'] for m in e['manual']]
    assert all(u.startswith('https://') for u in links), links
    assert e['source'].startswith('https://')
    if not e['direct_download']:
        assert e['manual'] and all('code' in m for m in e['manual'])
    assert e['archive']['format'] in ('zip', 'tar.gz')
    assert e['sha256'] is None or len(e['sha256']) == 64


def test_real_manifest_model_and_tokenizer_settings():
    entries = mf.load_manifest()
    assert entries['chinese_L-12_H-768_A-12']['model'] == 'bert'
    assert entries['chinese-roberta-wwm-ext']['model'] == 'roberta'
    for name in ('wobert', 'wobert_plus'):
        assert entries[name]['model'] == 'wobert'
        assert entries[name]['tokenizer'] == {'do_lower_case': True, 'pre_tokenize': 'jieba_hmm_false'}
    for name in REQUIRED_NAMES:
        if name.startswith('albert'):
            assert entries[name]['model'] == 'albert'


def test_root_symlink_points_at_packaged_manifest():
    link = Path(mf.__file__).resolve().parent.parent / 'checkpoints_manifest.json'
    if not link.exists():
        pytest.skip('repository-root symlink not present (installed package)')
    assert link.resolve() == Path(mf.MANIFEST_PATH).resolve()


# ------------------------------------------------------------------------------------------------
# Validation errors
# ------------------------------------------------------------------------------------------------

def test_missing_field_error_names_entry_and_field(tmp_path, zip_entry):
    entry, _ = zip_entry
    broken = copy.deepcopy(entry)
    del broken['tokenizer']['do_lower_case']
    del broken['sha256']
    path = write_manifest(tmp_path / 'm.json', [broken])
    with pytest.raises(mf.ManifestError) as err:
        mf.load_manifest(path)
    msg = str(err.value)
    assert "entry 'tiny_bert'" in msg
    assert "tokenizer.do_lower_case" in msg and "'sha256'" in msg


def test_validation_reports_several_problems_at_once(tmp_path, zip_entry):
    entry, _ = zip_entry
    a = copy.deepcopy(entry)
    a['archive']['format'] = 'rar'
    a['config']['num_attention_heads'] = 3  # 8 % 3 != 0
    b = copy.deepcopy(entry)  # duplicate name
    c = {'model': 'bert'}     # no name at all: labelled by position
    path = write_manifest(tmp_path / 'm.json', [a, b, c], version=2)
    with pytest.raises(mf.ManifestError) as err:
        mf.load_manifest(path)
    msg = str(err.value)
    for part in ('format_version', "'archive.format'", 'not divisible', 'duplicate name',
                 "entry #2: missing field 'name'"):
        assert part in msg


def test_albert_entry_requires_embedding_size(tmp_path, zip_entry):
    entry, _ = zip_entry
    entry = dict(entry, model='albert')
    path = write_manifest(tmp_path / 'm.json', [entry])
    with pytest.raises(mf.ManifestError, match='config.embedding_size'):
        mf.load_manifest(path)


def test_manual_entry_needs_share_links(tmp_path, zip_entry):
    entry, _ = zip_entry
    entry = dict(entry, direct_download=False)
    with pytest.raises(mf.ManifestError, match="'manual'"):
        mf.get_entry(entry)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(mf.ManifestError, match='Did you mean wobert'):
        mf.get_entry('woberd')


# ------------------------------------------------------------------------------------------------
# Download, resume, integrity
# ------------------------------------------------------------------------------------------------

def test_download_and_unpack_zip(tmp_path, zip_entry):
    entry, archive = zip_entry
    paths = mf.download(entry, tmp_path / 'dest', progress=False)
    assert paths['dir'] == str(tmp_path / 'dest' / 'tiny_bert' / 'tiny_bert')
    assert Path(paths['config']).name == 'bert_config.json'
    assert paths['checkpoint'].endswith('bert_model.ckpt')
    assert Path(paths['vocab']).read_text(encoding='utf-8').split() == VOCAB
    assert Path(paths['archive']).read_bytes() == archive.read_bytes()
    assert not Path(paths['archive'] + '.part').exists()
    # A second call reuses the verified archive and the unpacked folder.
    assert mf.download(entry, tmp_path / 'dest', progress=False) == paths


def test_download_tar_gz_without_root_is_located(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    archive = build_targz(src / 'flat.tar.gz', model_files(), root=None)
    entry = make_entry(archive.as_uri(), archive, fmt='tar.gz', root=None)
    paths = mf.download(entry, tmp_path / 'dest', progress=False)
    assert paths['dir'] == str(tmp_path / 'dest' / 'tiny_bert')


def test_download_finds_files_in_unexpected_folder(tmp_path):
    # Mirrors differ in their top folder: the files are searched for below the unpack dir.
    src = tmp_path / 'src'
    src.mkdir()
    archive = build_zip(src / 'm.zip', model_files(), root='publish/inner')
    entry = make_entry(archive.as_uri(), archive, root='tiny_bert')
    paths = mf.download(entry, tmp_path / 'dest', progress=False)
    assert paths['dir'].endswith(os.path.join('publish', 'inner'))


def test_resume_from_partial_part_file(tmp_path, zip_entry, monkeypatch):
    entry, archive = zip_entry
    dest = tmp_path / 'dest'
    dest.mkdir()
    data = archive.read_bytes()
    part = dest / (archive.name + '.part')
    part.write_bytes(data[:1000])
    offsets = []
    real_open = mf._open_source

    def spy(url, offset):
        offsets.append(offset)
        return real_open(url, offset)

    from bert4keras_ext.checkpoint_manifest import download as download_module
    monkeypatch.setattr(download_module, '_open_source', spy)  # patched where the download calls it
    paths = mf.download(entry, dest, progress=False)
    assert offsets == [1000]  # resumed, not restarted
    assert Path(paths['archive']).read_bytes() == data
    assert not part.exists()


def test_sha256_mismatch_keeps_part_and_names_both_hashes(tmp_path, zip_entry):
    entry, archive = zip_entry
    entry['sha256'] = '0' * 64
    dest = tmp_path / 'dest'
    with pytest.raises(mf.IntegrityError) as err:
        mf.download(entry, dest, progress=False)
    msg = str(err.value)
    assert '0' * 64 in msg and sha256_of(archive) in msg
    part = dest / (archive.name + '.part')
    assert part.read_bytes() == archive.read_bytes()  # kept for inspection
    assert not (dest / archive.name).exists()
    # Without verification the same file is accepted.
    paths = mf.download(entry, dest, progress=False, verify=False)
    assert Path(paths['config']).exists()


def test_size_mismatch_error(tmp_path, zip_entry):
    entry, archive = zip_entry
    size = os.path.getsize(archive)
    for dest, expected in (('a', size + 10), ('b', size - 10)):
        entry['size_bytes'] = expected
        with pytest.raises(mf.IntegrityError) as err:
            mf.download(entry, tmp_path / dest, progress=False)
        assert f'size: expected {expected} bytes, found {size}' in str(err.value)
        assert (tmp_path / dest / (archive.name + '.part')).exists()


def test_oversized_part_file_is_reported(tmp_path, zip_entry):
    entry, archive = zip_entry
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / (archive.name + '.part')).write_bytes(archive.read_bytes() + b'junk')
    with pytest.raises(mf.IntegrityError, match='larger than the expected'):
        mf.download(entry, dest, progress=False)


def test_falls_back_to_next_url_and_url_index(tmp_path, zip_entry):
    entry, archive = zip_entry
    missing = (tmp_path / 'nowhere' / archive.name).as_uri()
    entry['urls'] = [missing, archive.as_uri()]
    assert Path(mf.download(entry, tmp_path / 'a', progress=False)['config']).exists()
    with pytest.raises(mf.DownloadError, match='cannot open'):
        mf.download(entry, tmp_path / 'b', url_index=0, progress=False)
    with pytest.raises(mf.ManifestError, match='out of range'):
        mf.download(entry, tmp_path / 'c', url_index=5, progress=False)


def test_direct_download_false_explains_manual_steps(tmp_path, zip_entry):
    entry, _ = zip_entry
    entry.update(direct_download=False,
                 urls=['https://pan.baidu.com/s/xyz'],
                 manual=[{'url': 'https://pan.baidu.com/s/xyz', 'site': 'Baidu Pan', 'code': 'ab12'}])
    entry['archive']['filename'] = 'tiny.zip'
    with pytest.raises(mf.ManualDownloadRequired) as err:
        mf.download(entry, tmp_path / 'dest', progress=False)
    msg = str(err.value)
    for part in ('https://pan.baidu.com/s/xyz', 'ab12', 'tiny.zip', 'verify tiny_bert DIR'):
        assert part in msg
    assert not (tmp_path / 'dest').exists()


def test_archive_missing_files_lists_them(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    files = model_files()
    del files['vocab.txt']
    del files['bert_model.ckpt.index']
    archive = build_zip(src / 'bad.zip', files)
    entry = make_entry(archive.as_uri(), archive)
    with pytest.raises(mf.ManifestError) as err:
        mf.download(entry, tmp_path / 'dest', progress=False)
    msg = str(err.value)
    assert 'vocab vocab.txt' in msg and 'bert_model.ckpt.index' in msg
    assert 'bert_config.json' in msg  # shows what *was* there


# ------------------------------------------------------------------------------------------------
# HTTP resume (localhost only)
# ------------------------------------------------------------------------------------------------

class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b''
    honour_range = True
    seen_ranges = []

    def do_GET(self):  # noqa: N802 - http.server API
        rng = self.headers.get('Range')
        type(self).seen_ranges.append(rng)
        data, status = self.payload, 200
        if rng and self.honour_range:
            start = int(rng.split('=')[1].rstrip('-'))
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            data, status = data[start:], 206
        self.send_response(status)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('honour_range', [True, False])
def test_http_resume_with_range_header(tmp_path, zip_entry, http_server, honour_range):
    entry, archive = zip_entry
    data = archive.read_bytes()
    _RangeHandler.payload, _RangeHandler.honour_range, _RangeHandler.seen_ranges = data, honour_range, []
    entry['urls'] = [f'http://127.0.0.1:{http_server.server_address[1]}/{archive.name}']
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / (archive.name + '.part')).write_bytes(data[:700])
    paths = mf.download(entry, dest, progress=False)
    assert _RangeHandler.seen_ranges == ['bytes=700-']
    # A server that ignores Range sends everything again; the file must not be doubled.
    assert Path(paths['archive']).read_bytes() == data


# ------------------------------------------------------------------------------------------------
# Unpacking safety
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('member', ['../evil.txt', '/abs/evil.txt', 'ok/../../evil.txt', 'C:/evil.txt'])
def test_zip_path_traversal_rejected(tmp_path, member):
    archive = tmp_path / 'evil.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.writestr('fine.txt', b'x')
        zf.writestr(member, b'x')
    with pytest.raises(mf.UnsafeArchiveError):
        mf.unpack(archive, tmp_path / 'out', 'zip')
    # Checked before extracting: nothing was written.
    assert not (tmp_path / 'out' / 'fine.txt').exists()
    assert not (tmp_path / 'evil.txt').exists()


def test_tar_traversal_and_links_rejected(tmp_path):
    for name, kind in (('../evil.txt', tarfile.REGTYPE), ('link', tarfile.SYMTYPE)):
        archive = tmp_path / 'evil.tar.gz'
        with tarfile.open(archive, 'w:gz') as tf:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = '/etc/passwd'
            tf.addfile(info, io.BytesIO(b''))
        with pytest.raises(mf.UnsafeArchiveError):
            mf.unpack(archive, tmp_path / 'out', 'tar.gz')


def test_download_rejects_traversal_archive(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    archive = src / 'evil.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.writestr('../../escape.txt', b'x')
    entry = make_entry(archive.as_uri(), archive)
    with pytest.raises(mf.UnsafeArchiveError, match="contains '..'"):
        mf.download(entry, tmp_path / 'dest', progress=False)
    assert not (tmp_path / 'escape.txt').exists()


# ------------------------------------------------------------------------------------------------
# verify() against tiny real checkpoints
# ------------------------------------------------------------------------------------------------

def make_model_dir(path, cfg, variables, config_name='bert_config.json', vocab=VOCAB):
    path.mkdir(parents=True)
    (path / config_name).write_text(json.dumps(cfg), encoding='utf-8')
    (path / 'vocab.txt').write_text('\n'.join(vocab) + '\n', encoding='utf-8')
    save_checkpoint(path / 'bert_model.ckpt', variables)
    return path


def local_entry(model='bert', config=None):
    return {'name': 'tiny', 'model': model, 'description': 'tiny',
            'tokenizer': {'do_lower_case': True, 'pre_tokenize': None},
            'urls': ['https://example.org/tiny.zip'],
            'archive': {'format': 'zip', 'root': 'tiny',
                        'files': {'config': 'bert_config.json', 'checkpoint': 'bert_model.ckpt',
                                  'vocab': 'vocab.txt'}},
            'config': dict(config or TINY_BERT), 'sha256': None, 'size_bytes': None,
            'source': 'https://example.org'}


def test_verify_bert_checkpoint_ok(tmp_path):
    variables = bert_variables(TINY_BERT)
    variables['bert/encoder/layer_0/attention/self/query/kernel/adam_m'] = (8, 8)  # slots are ignored
    variables['global_step'] = ()
    make_model_dir(tmp_path / 'unpacked' / 'tiny', TINY_BERT, variables)
    # Accepts the unpack dir (root resolved) as well as the model dir itself.
    report = mf.verify(local_entry(), str(tmp_path / 'unpacked'))
    assert report['ok'] and report['dir'].endswith('tiny')
    assert report['vocab_tokens'] == 10
    assert report['checkpoint']['encoder_layers'] == 2
    assert report['checkpoint']['num_variables'] == len(bert_variables(TINY_BERT))
    assert report['checkpoint']['num_optimizer_slots'] == 2
    assert mf.verify(local_entry(), str(tmp_path / 'unpacked' / 'tiny'))['ok']


def test_verify_lists_every_problem(tmp_path):
    variables = bert_variables(TINY_BERT)
    variables['bert/embeddings/word_embeddings'] = (12, 8)             # wrong vocab rows
    variables['bert/encoder/layer_1/intermediate/dense/kernel'] = (8, 32)
    del variables['bert/encoder/layer_1/output/LayerNorm/beta']
    cfg = dict(TINY_BERT, num_hidden_layers=3)                          # config != manifest
    make_model_dir(tmp_path / 'tiny', cfg, variables, vocab=VOCAB[:9])  # 9 tokens != 10
    with pytest.raises(mf.VerificationError) as err:
        mf.verify(local_entry(), str(tmp_path / 'tiny'))
    msg = str(err.value)
    for part in ('config num_hidden_layers: expected 2, found 3',
                 'vocab file has 9 tokens but vocab_size is 10',
                 'bert/embeddings/word_embeddings: expected shape (10, 8), found (12, 8)',
                 'bert/encoder/layer_1/intermediate/dense/kernel: expected shape (8, 16), found (8, 32)',
                 'missing variable bert/encoder/layer_1/output/LayerNorm/beta',
                 'missing variable bert/encoder/layer_2/attention/self/query/kernel'):
        assert part in msg
    assert err.value.report['ok'] is False
    assert len(err.value.problems) >= 6


def test_verify_albert_checkpoint_and_family_hint(tmp_path):
    make_model_dir(tmp_path / 'albert', TINY_ALBERT, albert_variables(TINY_ALBERT))
    entry = local_entry('albert', TINY_ALBERT)
    report = mf.verify(entry, str(tmp_path / 'albert'))
    assert report['ok'] and report['checkpoint']['checked_variables'] > 10

    # A BERT checkpoint given as ALBERT: the error says which model= to use.
    make_model_dir(tmp_path / 'bert', TINY_ALBERT, bert_variables(TINY_BERT))
    with pytest.raises(mf.VerificationError, match="use model='bert'"):
        mf.verify(entry, str(tmp_path / 'bert'))


def test_verify_albert_without_mapping_needs_equal_sizes(tmp_path):
    # bojone-converted ALBERT: embeddings already at hidden size, no embedding_hidden_mapping_in,
    # and a config that may omit embedding_size (then it means hidden_size).
    cfg = dict(TINY_ALBERT, embedding_size=8)
    variables = albert_variables(cfg)
    del variables['bert/encoder/embedding_hidden_mapping_in/kernel']
    del variables['bert/encoder/embedding_hidden_mapping_in/bias']
    file_cfg = {k: v for k, v in cfg.items() if k != 'embedding_size'}
    make_model_dir(tmp_path / 'conv', file_cfg, variables)
    assert mf.verify(local_entry('albert', cfg), str(tmp_path / 'conv'))['ok']
    # The factorised manifest entry (E=4) does not describe that checkpoint.
    with pytest.raises(mf.VerificationError, match='config embedding_size: expected 4, found 8'):
        mf.verify(local_entry('albert', TINY_ALBERT), str(tmp_path / 'conv'))
    # A config claiming E=4 for that checkpoint: shapes and the missing mapping are reported.
    make_model_dir(tmp_path / 'claims_e4', TINY_ALBERT, variables)
    with pytest.raises(mf.VerificationError) as err:
        mf.verify(local_entry('albert', TINY_ALBERT), str(tmp_path / 'claims_e4'))
    msg = str(err.value)
    assert 'missing variable bert/encoder/embedding_hidden_mapping_in/kernel' in msg
    assert 'bert/embeddings/word_embeddings: expected shape (10, 4), found (10, 8)' in msg
    assert 'needs embedding_size = hidden_size' in msg


def test_verify_missing_files(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(mf.VerificationError) as err:
        mf.verify(local_entry(), str(tmp_path / 'empty'))
    msg = str(err.value)
    assert 'config bert_config.json' in msg and 'bert_model.ckpt.index' in msg and 'vocab.txt' in msg


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def test_cli_list_packaged(capsys):
    assert mf.cli(['list']) == 0
    out = capsys.readouterr().out
    assert 'chinese_L-12_H-768_A-12' in out and 'albert_tiny_google_zh' in out
    line = next(l for l in out.splitlines() if l.startswith('wobert '))
    assert 'wobert' in line and 'manual' in line and '768/12/12' in line


def test_cli_list_custom_manifest_and_errors(tmp_path, zip_entry, capsys):
    entry, archive = zip_entry
    path = write_manifest(tmp_path / 'm.json', [entry])
    assert mf.cli(['--manifest', str(path), 'list']) == 0
    out = capsys.readouterr().out
    assert 'tiny_bert' in out and '8/2/2' in out and 'direct' in out

    bad = write_manifest(tmp_path / 'bad.json', [{'name': 'x'}])
    assert mf.cli(['--manifest', str(bad), 'list']) == 1
    assert "error: invalid manifest" in capsys.readouterr().err

    assert mf.cli(['frobnicate']) == 2        # usage error
    assert mf.cli([]) == 2
    capsys.readouterr()


def test_cli_download_verify_and_sha256(tmp_path, capsys):
    # A real (tiny) checkpoint in a zip, downloaded and verified through the CLI.
    model = make_model_dir(tmp_path / 'build' / 'tiny_bert', TINY_BERT, bert_variables(TINY_BERT))
    src = tmp_path / 'src'
    src.mkdir()
    archive = src / 'tiny_bert.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        for f in sorted(model.iterdir()):
            zf.write(f, f'tiny_bert/{f.name}')
    path = write_manifest(tmp_path / 'm.json', [make_entry(archive.as_uri(), archive)])
    dest = tmp_path / 'dest'
    assert mf.cli(['--manifest', str(path), 'download', 'tiny_bert', '--dest', str(dest), '--quiet']) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 'tiny_bert'")
    assert f"checkpoint_path = {str(dest / 'tiny_bert' / 'tiny_bert' / 'bert_model.ckpt')!r}" in out

    assert mf.cli(['--manifest', str(path), 'verify', 'tiny_bert', str(dest / 'tiny_bert')]) == 0
    assert 'OK:' in capsys.readouterr().out
    assert mf.cli(['--manifest', str(path), 'verify', 'tiny_bert', str(tmp_path / 'src')]) == 1
    assert 'failed verification' in capsys.readouterr().err

    assert mf.cli(['sha256', str(archive), '--quiet']) == 0
    assert capsys.readouterr().out.split()[:2] == [sha256_of(archive), str(os.path.getsize(archive))]
    assert mf.cli(['sha256', str(tmp_path / 'nope')]) == 1


def test_cli_download_manual_entry_exit_code(capsys, tmp_path):
    assert mf.cli(['download', 'wobert', '--dest', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'https://pan.baidu.com/s/1BrdFSx9_n1q2uWBiQrpalw' in err and 'kim2' in err
    assert 'verify wobert DIR' in err


def test_module_runs_as_script(tmp_path):
    import subprocess
    import sys
    root = Path(mf.__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, '-m', 'bert4keras_ext.manifest', 'list'],
                            cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'albert_xlarge_google_zh' in result.stdout
