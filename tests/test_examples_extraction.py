"""The three extraction/similarity examples run in their no-argument mode (generated data, tiny random
BERT), with reduced sizes, print their metric and beat a trivial baseline."""
import pytest

from conftest import load_example


def test_relation_extraction_gplinker_runs(capsys, tmp_path):
    example = load_example('task_relation_extraction_gplinker')
    results = example.main(['--num-train', '400', '--num-valid', '100', '--epochs', '4', '--quiet',
                            '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'exact triples on 100 valid texts' in out and 'F1' in out
    # predicting no triple scores F1 = 0; the trained extractor gets most triples exactly right
    assert results['f1'] >= 0.6, results


def test_sequence_labeling_ner_crf_runs(capsys, tmp_path):
    example = load_example('task_sequence_labeling_ner_crf')
    results = example.main(['--num-train', '400', '--num-valid', '100', '--epochs', '3', '--quiet',
                            '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'entities on 100 valid sentences' in out and 'F1' in out
    assert results['f1'] >= 0.6, results  # tagging everything O scores F1 = 0


def test_sentence_similarity_am_softmax_runs(capsys, tmp_path):
    example = load_example('task_sentence_similarity_am_softmax')
    results = example.main(['--num-train', '640', '--epochs', '2', '--quiet', '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'held-out retrieval accuracy' in out and 'Spearman' in out
    # the untrained encoder (same random checkpoint) is the trivial baseline
    assert results['retrieval_accuracy'] >= results['untrained_retrieval_accuracy'] + 0.2, results
    assert results['spearman'] > results['untrained_spearman'] + 0.05, results


def write_duie(directory, gplinker, n, seed):
    import json
    records = gplinker.generate_dataset(n, seed=seed)
    records[0]['spo_list'][0]['object'] = {'@value': records[0]['spo_list'][0]['object']}  # DuIE 2.0 form
    path = directory / ('train_data.json' if seed == 0 else 'dev_data.json')
    path.write_text('\n'.join(json.dumps(r, ensure_ascii=False) for r in records), encoding='utf-8')
    return records


def test_gplinker_example_reads_duie_json_lines(tmp_path):
    """The --data-dir path up to training: DuIE 2.0 / LIC2019 records, schema file, labels."""
    from bert4keras_ext.demo import build_vocab
    from bert4keras_ext.gplinker import parse_duie_object
    from bert4keras_ext.tokenizers import Tokenizer
    gplinker = load_example('task_relation_extraction_gplinker')
    train = write_duie(tmp_path, gplinker, 12, 0)
    loaded = gplinker.load_duie(str(tmp_path / 'train_data.json'))
    assert [r['text'] for r in loaded] == [r['text'] for r in train]
    assert loaded[0]['spo_list'][0]['object'] == train[0]['spo_list'][0]['object']
    (tmp_path / 'all_50_schemas').write_text('{"predicate": "国籍", "subject_type": "人物"}\n', encoding='utf-8')
    predicates = gplinker.load_predicates(str(tmp_path), loaded)
    assert predicates[0] == '国籍' and set(predicates[1:]) == {s['predicate'] for r in loaded for s in r['spo_list']}
    vocab = build_vocab(r['text'] for r in loaded)
    tokenizer = Tokenizer({t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    ids, labels, mappings, gold = gplinker.encode_dataset(tokenizer, loaded, {p: i for i, p in enumerate(predicates)}, 64)
    assert ids.shape[0] == 12 and labels[0].shape[:2] == (12, 2) and labels[1].shape[1] == len(predicates)
    assert gold[0] == {(s['subject'], s['predicate'], parse_duie_object(s['object'])) for s in loaded[0]['spo_list']}
    (tmp_path / 'broken.json').write_text('{"text": 1\n', encoding='utf-8')
    with pytest.raises(ValueError, match='broken.json:1'):
        gplinker.load_duie(str(tmp_path / 'broken.json'))


def test_people_daily_and_lcqmc_readers(tmp_path):
    ner = load_example('task_sequence_labeling_ner_crf')
    sentences = ner.generate_sentences(5, seed=1)
    lines = []
    for text, entities in sentences:
        tags = ['O'] * len(text)
        for start, end, kind in entities:
            tags[start:end] = ['B-' + kind] + ['I-' + kind] * (end - start - 1)
        lines += ['%s %s' % pair for pair in zip(text, tags)] + ['']
    (tmp_path / 'example.dev').write_text('\n'.join(lines), encoding='utf-8')
    assert ner.load_people_daily(str(tmp_path / 'example.dev')) == sentences
    assert ner.load_people_daily(str(tmp_path / 'example.dev'), limit=2) == sentences[:2]
    (tmp_path / 'bad.txt').write_text('张 B-PER extra\n', encoding='utf-8')
    with pytest.raises(ValueError, match='bad.txt:1'):
        ner.load_people_daily(str(tmp_path / 'bad.txt'))

    similarity = load_example('task_sentence_similarity_am_softmax')
    (tmp_path / 'lcqmc.txt').write_text('怎么改密码\t密码怎么改\t1\n今天天气\t怎么注销\t0\n', encoding='utf-8')
    assert similarity.load_lcqmc(str(tmp_path / 'lcqmc.txt')) == [('怎么改密码', '密码怎么改', 1), ('今天天气', '怎么注销', 0)]
    (tmp_path / 'bad.tsv').write_text('a\tb\n', encoding='utf-8')
    with pytest.raises(ValueError, match='bad.tsv:1'):
        similarity.load_lcqmc(str(tmp_path / 'bad.tsv'))
